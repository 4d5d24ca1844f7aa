"""FlexTok's transformer numerics ("FlexTok: Resampling Images into 1D Token Sequences of Flexible Length",
Bachmann et al. 2025), as its released inference code computes them.

What differs from the ViT blocks of `vistok.nn.blocks`:
- separate query / key / value projections, no bias anywhere in attention or MLP;
- LayerNorm without affine parameters (and without bias), computed in fp32 and cast back;
- QK-norm: the same non-affine LayerNorm over each head's queries and keys;
- attention scale 8 / head_dim (muP-compatible; equals 1 / sqrt(head_dim) only at head_dim 64);
- SwiGLU MLP with hidden width int(2/3 * mlp_ratio * dim): fc2(silu(fc1 x) * fc3 x);
- adaLN-zero (DiT) in the decoder with FlexTok's chunk order (gate_msa, gate_mlp, shift_msa, scale_msa,
  shift_mlp, scale_mlp) and an `expansion`: with expansion 2 the time embedding gives one set of modulation
  vectors for the image patches and another for the registers.

Module and parameter names follow the released checkpoints (`wq`, `wk`, `wv`, `proj`, `mlp.fc1/fc2/fc3`,
`adaLN_modulation.1`) so that an import is a rename of prefixes. Shapes: (B, L, D) in and out; masks are SDPA
booleans (True: may attend), (L, L) or (B, 1, L, L).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def fp32_layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Non-affine LayerNorm over the last dimension, in fp32, cast back to x's dtype."""
    return F.layer_norm(x.float(), (x.shape[-1],), None, None, eps).type_as(x)


class FlexAttention(nn.Module):
    def __init__(self, dim: int, head_dim: int = 64, qk_norm: bool = True) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"width {dim} is not a multiple of head_dim {head_dim}")
        self.heads, self.head_dim, self.qk_norm = dim // head_dim, head_dim, qk_norm
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.scale = 8.0 / head_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # (B, L, D) -> q, k, v (B, H, L, head_dim)
        q, k, v = (rearrange(f(x), "b l (h d) -> b h l d", h=self.heads) for f in (self.wq, self.wk, self.wv))
        if self.qk_norm:
            q, k = fp32_layer_norm(q), fp32_layer_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(2 * int(dim * mlp_ratio) / 3)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.fc3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


def segment_modulation(mod: torch.Tensor, segments: tuple[int, ...], length: int) -> torch.Tensor:
    """mod (B, E * M) for E = len(segments) consecutive segments -> (B, length, M): segment j's rows get the
    j-th block of M; rows past sum(segments) (padding) get 0."""
    b = mod.shape[0]
    parts = rearrange(mod, "b (e m) -> b e m", e=len(segments))
    rows = torch.repeat_interleave(parts, torch.tensor(segments, device=mod.device), dim=1)  # (B, sum, M)
    if rows.shape[1] < length:
        rows = torch.cat([rows, rows.new_zeros(b, length - rows.shape[1], rows.shape[2])], dim=1)
    return rows


class FlexBlock(nn.Module):
    """Pre-norm block; with `adaln_expansion` > 0, adaLN-zero modulated by a (B, D) embedding."""

    def __init__(self, dim: int, head_dim: int = 64, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 adaln_expansion: int = 0) -> None:
        super().__init__()
        self.attn = FlexAttention(dim, head_dim, qk_norm)
        self.mlp = SwiGLU(dim, mlp_ratio)
        self.adaln_expansion = adaln_expansion
        if adaln_expansion:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, adaln_expansion * 6 * dim))
            nn.init.zeros_(self.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, emb: torch.Tensor | None = None,
                segments: tuple[int, ...] | None = None) -> torch.Tensor:
        """x (B, L, D); emb (B, D) with `segments` the lengths of the sequence's parts (one per expansion)."""
        if not self.adaln_expansion:
            x = x + self.attn(fp32_layer_norm(x), mask)
            return x + self.mlp(fp32_layer_norm(x))
        mod = segment_modulation(self.adaLN_modulation(emb), segments, x.shape[1])  # (B, L, 6D)
        gate1, gate2, shift1, scale1, shift2, scale2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(fp32_layer_norm(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self.mlp(fp32_layer_norm(x) * (1 + scale2) + shift2)


class FlexTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, head_dim: int = 64, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 adaln_expansion: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FlexBlock(dim, head_dim, mlp_ratio, qk_norm, adaln_expansion)
                                    for _ in range(depth))
        for name, m in self.named_modules():  # the released code's initialisation (xavier, zero adaLN)
            if isinstance(m, nn.Linear) and "adaLN_modulation" not in name:
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, emb: torch.Tensor | None = None,
                segments: tuple[int, ...] | None = None, return_layers: tuple[int, ...] = ()
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """`return_layers`: also return the outputs of these blocks (0-based; REPA reads one)."""
        taken = []
        for i, block in enumerate(self.blocks):
            x = block(x, mask, emb, segments)
            if i in return_layers:
                taken.append(x)
        return (x, taken) if return_layers else x
