"""Frozen 2D sine-cosine position embeddings in FlexTok's layout (MoCo v3 style, Bachmann et al. 2025).

The table for an (h, w) grid is built over a (w, h) meshgrid flattened w-major and then read back as (h, w)
rows, exactly as the released code does: on a square grid the first half of the channels encodes the row and
the second half the column; on a non-square grid the same flat order is kept (the released layout, quirk
included). Channels: [sin(a w_k), cos(a w_k), sin(b w_k), cos(b w_k)] with w_k = T^(-k / (D/4)), T = 10000.
"""

from __future__ import annotations

import torch


def flextok_sincos_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(h, w, dim) float32 table."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = temperature ** -(torch.arange(quarter, dtype=torch.float32) / quarter)  # (D/4,)
    flat = torch.arange(w * h)
    first, second = (flat // h).float(), (flat % h).float()  # the w-major meshgrid, flattened
    a, b = first[:, None] * omega, second[:, None] * omega  # (w*h, D/4)
    table = torch.cat([a.sin(), a.cos(), b.sin(), b.cos()], dim=1)  # (w*h, D)
    return table.reshape(h, w, dim)
