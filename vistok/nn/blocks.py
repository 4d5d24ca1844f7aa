"""Pre-norm transformer blocks (ViT / TiTok), with optional adaLN-zero modulation (DiT).

adaLN-zero follows DiT (Peebles & Xie, 2023): a conditioning vector produces shift, scale and gate for both
sub-blocks, the gate initialised to zero so that every block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.nn.attention import Attention

GELUS = ("tanh", "exact")


class MLP(nn.Module):
    """fc1 -> GELU -> fc2. `gelu`: "tanh" (the approximation, our default) or "exact" (erf: ViT, TiTok)."""

    def __init__(self, dim: int, hidden: int, gelu: str = "tanh") -> None:
        super().__init__()
        if gelu not in GELUS:
            raise ValueError(f"gelu must be one of {GELUS}, got {gelu!r}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh" if gelu == "tanh" else "none")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """x + attn(norm(x)); x + mlp(norm(x)). With `cond_dim`, DiT's adaLN-zero modulation by a (B, C) vector.
    `gelu` and `norm_eps`: ours are the tanh GELU and eps 1e-6; TiTok's blocks (open_clip style) use the exact
    GELU and LayerNorm's default eps 1e-5."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        cond_dim: int | None = None,
        qkv_bias: bool = True,
        gelu: str = "tanh",
        norm_eps: float = 1e-6,
    ) -> None:
        """`qkv_bias=False, gelu="exact", norm_eps=1e-5`: timm 1.0.9's ViT `Block` as LARP builds it."""
        super().__init__()
        affine = cond_dim is None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), gelu)
        self.modulation = None
        if cond_dim is not None:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
            nn.init.zeros_(self.modulation[-1].weight)
            nn.init.zeros_(self.modulation[-1].bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.attn(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))
        # cond: (B, C) -> six (B, 1, D) modulation vectors
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class Transformer(nn.Module):
    """A stack of `depth` pre-norm blocks sharing one mask (and condition)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        cond_dim: int | None = None,
        qkv_bias: bool = True,
        gelu: str = "tanh",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, qk_norm, cond_dim, qkv_bias, gelu, norm_eps)
            for _ in range(depth)
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask, cond)
        return x
