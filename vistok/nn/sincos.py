"""Fixed sine-cosine position embeddings (Vaswani et al. 2017; the 2-D form of MAE, He et al. 2022), as LARP
uses them for its patches (3-D: a 2-D table per frame plus a 1-D table over latent frames) and its latent tokens
(1-D). Computed in float64, returned in float32.

Shapes: `sincos_1d` -> (M, D); `sincos_3d` -> (T * g * g, D), time-major, then rows, then columns.

`flextok_sincos_2d` is FlexTok's frozen 2-D table (MoCo v3 style, Bachmann et al. 2025), in the layout its
released code builds: over a (w, h) meshgrid flattened w-major and read back as (h, w) rows, so on a square grid
the first half of the channels encodes the row and the second half the column; on a non-square grid the same flat
order is kept (the released layout, quirk included). Channels: [sin(a w_k), cos(a w_k), sin(b w_k), cos(b w_k)]
with w_k = T^(-k / (D/4)), T = 10000.
"""

from __future__ import annotations

import torch


def _table(dim: int, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    if dim % 2:
        raise ValueError(f"a sine-cosine embedding needs an even width, got {dim}")
    omega = 1.0 / base ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.reshape(-1).double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # float64


def _table_2d(dim: int, grid: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([_table(dim // 2, cols), _table(dim // 2, rows)], dim=1)


def sincos_1d(dim: int, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """(M,) positions -> (M, dim): sin of every frequency, then cos, frequencies base^(-2i/dim)."""
    return _table(dim, positions, base).float()


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid * grid, dim) over a square grid, row-major: the first half of the width encodes the column, the
    second half the row (MAE's layout)."""
    return _table_2d(dim, grid).float()


def sincos_3d(dim: int, grid: int, frames: int) -> torch.Tensor:
    """(frames * grid * grid, dim): the 2-D table of a frame plus the full-width 1-D table of its index."""
    spatial = _table_2d(dim, grid).reshape(1, grid * grid, dim)
    temporal = _table(dim, torch.arange(frames)).reshape(frames, 1, dim)
    return (spatial + temporal).reshape(-1, dim).float()


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
