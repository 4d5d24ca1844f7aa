"""Multi-head self-attention on `F.scaled_dot_product_attention`, plus the mask helpers.

Masks are boolean with True meaning "may attend", the convention of SDPA. A mask is either (L, L), shared by
the batch, or (B, 1, L, L), one per sample (key padding for variable-length token sequences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention (ViT style: fused qkv projection, output projection)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        head_dim = dim // num_heads
        # QK-norm keeps attention logits bounded in bf16 for deep models; off by default like TiTok.
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, L, D) -> q, k, v: (B, H, L, D/H)
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if mask is not None and mask.is_floating_point():  # an additive bias must match q under autocast
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


def key_padding_mask(valid: torch.Tensor, prefix: int = 0) -> torch.Tensor:
    """(B, 1, L, L) mask from a (B, K) validity mask of the last K positions.

    The first `prefix` positions (for example image patches) are always valid keys. Invalid positions still
    attend (to the valid keys) so that no row of the mask is empty, which SDPA would turn into NaN.
    """
    b, _ = valid.shape
    keys = torch.cat([valid.new_ones(b, prefix), valid], dim=1)  # (B, L)
    return keys[:, None, None, :].expand(-1, 1, keys.shape[1], -1)
