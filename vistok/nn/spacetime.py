"""Decoupled space-time transformer (OmniTokenizer, Wang et al. 2024): spatial blocks inside each latent frame
(full attention, or attention inside non-overlapping windows, as OmniTokenizer's "2 full + 2 window, window 8")
and temporal blocks along time at each spatial position, causal in time.

Departures from OmniTokenizer:
- temporal attention is causal *and* windowed (latent frame i sees frames i-W+1..i) with a learned relative
  position bias per head and offset, given to SDPA as an additive mask. OmniTokenizer's SDPA path drops its
  relative bias; ours is in the mask, so it is used. Relative positions and a bounded window make every
  output depend only on the last `depth * (W-1)` latent frames, which is what lets a clip of any length be
  encoded in chunks with exactly the tokens of a whole encode (`vistok.tokenizers.chunked`);
- positions inside a frame are a learned absolute embedding (added by the encoder/decoder), not PEG convs.

Shapes: (B, T', h, w, D) in and out.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.nn.blocks import TransformerBlock

SPATIAL_KINDS = ("full", "window")


class TemporalBias(nn.Module):
    """Additive (heads, T, T) mask: a learned bias for offsets 0..W-1 into the past, -inf elsewhere."""

    def __init__(self, num_heads: int, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"temporal_window must be >= 1, got {window}")
        self.window = window
        self.bias = nn.Parameter(torch.zeros(num_heads, window))

    def forward(self, t: int) -> torch.Tensor:
        i = torch.arange(t, device=self.bias.device)
        offset = i[:, None] - i[None, :]  # (T, T): query - key
        allowed = (offset >= 0) & (offset < self.window)
        bias = self.bias[:, offset.clamp(0, self.window - 1)]  # (H, T, T)
        return bias.masked_fill(~allowed, float("-inf"))


class SpaceTimeTransformer(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        spatial_blocks: list[str],
        temporal_depth: int,
        window_size: int = 8,
        temporal_window: int = 8,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        temporal_first: bool = False,
    ) -> None:
        """`spatial_blocks`: one of "full" / "window" per spatial block; `temporal_first`: the decoder's
        order (the mirror of the encoder's spatial-then-temporal)."""
        super().__init__()
        bad = [k for k in spatial_blocks if k not in SPATIAL_KINDS]
        if bad:
            raise ValueError(f"spatial_blocks entries must be one of {SPATIAL_KINDS}, got {bad}")
        h, w = grid
        if "window" in spatial_blocks and (h % window_size or w % window_size):
            raise ValueError(f"window_size {window_size} must divide the token grid {h} x {w}")
        self.grid, self.kinds, self.window_size = grid, list(spatial_blocks), window_size
        self.temporal_first = temporal_first
        self.spatial = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio, qk_norm) for _ in spatial_blocks)
        self.temporal = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio, qk_norm)
                                      for _ in range(temporal_depth))
        self.temporal_bias = nn.ModuleList(TemporalBias(num_heads, temporal_window) for _ in range(temporal_depth))
        self.context = temporal_depth * (temporal_window - 1)  # latent frames an output can depend on, before it

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        for kind, block in zip(self.kinds, self.spatial):
            if kind == "full":
                x = rearrange(block(rearrange(x, "b t h w d -> (b t) (h w) d")), "(b t) (h w) d -> b t h w d",
                              b=b, h=h)
            else:  # attention inside each window x window square of the grid
                s = self.window_size
                y = rearrange(x, "b t (nh s1) (nw s2) d -> (b t nh nw) (s1 s2) d", s1=s, s2=s)
                x = rearrange(block(y), "(b t nh nw) (s1 s2) d -> b t (nh s1) (nw s2) d", b=b, t=t, nh=h // s,
                              s1=s)
        return x

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        y = rearrange(x, "b t h w d -> (b h w) t d")
        for block, bias in zip(self.temporal, self.temporal_bias):
            y = block(y, bias(t))
        return rearrange(y, "(b h w) t d -> b t h w d", b=b, h=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_first:
            return self._spatial(self._temporal(x))
        return self._temporal(self._spatial(x))
