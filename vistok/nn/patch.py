"""Pixels to patch tokens and back.

`PatchEmbed2D` is ViT's linear patchify. `ConvStem` is the hybrid alternative (a few stride-2 convolutions,
as in "Early convolutions help transformers see better", Xiao et al. 2021): on tiny images and short
training it lets the encoder see local structure before attention, which is what made the CPU demo's
tokens carry the image. `ConvUpsampleHead` is its mirror for the decoder.

Neither has a normalisation layer: GroupNorm(1, C) (a per-image LayerNorm over C, H, W) with no residual path
removes each image's global brightness and colour, and in our CPU runs blue crops came back grey (16.9 dB vs
18.4 dB held-out after 300 steps without it).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def _num_halvings(patch_size: int) -> int:
    n = int(math.log2(patch_size))
    if 2**n != patch_size:
        raise ValueError(f"patch_size must be a power of two for a conv stem/head, got {patch_size}")
    return n


class PatchEmbed2D(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, D) with a stride-p convolution (= a linear map of each patch)."""

    def __init__(self, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


def _stage_channels(channels: list[int] | tuple[int, ...] | None, default: list[int]) -> list[int]:
    if channels is None:
        return default
    channels = [int(c) for c in channels]
    if len(channels) != len(default) or any(c < 1 for c in channels):
        raise ValueError(f"channels must be {len(default)} positive ints (one per conv stage), got {channels}")
    return channels


class ConvStem(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, D) with log2(p) stride-2 3x3 convolutions, widening as it goes.

    `channels` (one per stage, first = highest resolution) overrides the default widths
    max(dim / 2^(n-i), 32); smaller stages make the stem cheaper on a CPU."""

    def __init__(self, patch_size: int, in_channels: int, dim: int,
                 channels: list[int] | None = None) -> None:
        super().__init__()
        n = _num_halvings(patch_size)
        widths = _stage_channels(channels, [max(dim // 2 ** (n - i), 32) for i in range(n)])
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(n):
            out = widths[i]
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.GELU()]
            ch = out
        layers.append(nn.Conv2d(ch, dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.net(x), "b d h w -> b (h w) d")


def grid_hw(grid: int | tuple[int, int]) -> tuple[int, int]:
    """A patch grid given as a side (square) or as (rows, columns)."""
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def unpatchify(x: torch.Tensor, patch_size: int, grid: int | tuple[int, int], channels: int = 3) -> torch.Tensor:
    """(B, gh*gw, p*p*C) -> (B, C, gh*p, gw*p); `grid` is gh = gw or (gh, gw)."""
    gh, gw = grid_hw(grid)
    return rearrange(
        x, "b (h w) (p q c) -> b c (h p) (w q)", h=gh, w=gw, p=patch_size, q=patch_size, c=channels
    )


class LinearPatchHead(nn.Module):
    """(B, L, D) -> (B, C, H, W): ViT's linear map of each token to its patch's pixels."""

    def __init__(self, patch_size: int, out_channels: int, dim: int, grid: int | tuple[int, int]) -> None:
        super().__init__()
        self.patch_size, self.grid, self.out_channels = patch_size, grid, out_channels
        self.proj = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(self.proj(x), self.patch_size, self.grid, self.out_channels)


class ConvUpsampleHead(nn.Module):
    """(B, L, D) -> (B, C, H, W): nearest-upsample + 3x3 conv stages, the mirror of `ConvStem`.

    `channels` (one per stage, first = lowest resolution) overrides the default widths
    max(dim / 2^(i+1), 32); the full-resolution stages dominate the cost, so narrowing them is cheap."""

    def __init__(self, patch_size: int, out_channels: int, dim: int, grid: int | tuple[int, int],
                 channels: list[int] | None = None) -> None:
        super().__init__()
        n = _num_halvings(patch_size)
        widths = _stage_channels(channels, [max(dim // 2 ** (i + 1), 32) for i in range(n)])
        self.grid = grid
        layers: list[nn.Module] = []
        ch = dim
        for i in range(n):
            out = widths[i]
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch, out, 3, padding=1),
                nn.GELU(),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw = grid_hw(self.grid)
        x = rearrange(x, "b (h w) d -> b d h w", h=gh, w=gw)
        return self.net(x)


def build_stem(kind: str, patch_size: int, in_channels: int, dim: int,
               channels: list[int] | None = None) -> nn.Module:
    """`channels` (conv stem only) sets each stage's width; None keeps the defaults."""
    if kind == "linear":
        if channels is not None:
            raise ValueError("channels applies only to a conv stem")
        return PatchEmbed2D(patch_size, in_channels, dim)
    if kind == "conv":
        return ConvStem(patch_size, in_channels, dim, channels)
    raise ValueError(f"stem must be 'linear' or 'conv', got {kind!r}")


def build_head(kind: str, patch_size: int, out_channels: int, dim: int, grid: int | tuple[int, int],
               channels: list[int] | None = None) -> nn.Module:
    """`channels` (conv head only) sets each stage's width; None keeps the defaults."""
    if kind == "linear":
        if channels is not None:
            raise ValueError("channels applies only to a conv head")
        return LinearPatchHead(patch_size, out_channels, dim, grid)
    if kind == "conv":
        return ConvUpsampleHead(patch_size, out_channels, dim, grid, channels)
    raise ValueError(f"head must be 'linear' or 'conv', got {kind!r}")
