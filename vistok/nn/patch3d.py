"""Video pixels to latent-frame patch tokens and back, with the first frame on its own (OmniTokenizer,
Wang et al. 2024; the causal layout of MAGVIT-v2 and Cosmos).

A clip of T = 1 + t*k frames becomes 1 + k latent frames: frame 0 alone (1 x p x p patches) and then groups of
t frames (t x p x p patches). An image is the k = 0 case, so images and videos share every weight but the two
embeddings. Each patch is LayerNorm -> Linear -> LayerNorm, as OmniTokenizer's linear embedding.

A chunk that does not start at frame 0 (`starts_video=False`) is all groups of t frames: chunked encoding
re-embeds earlier groups as context and they must be embedded as they were in the whole clip.

Shapes: (B, C, T, H, W) -> (B, T', h, w, D) with T' = 1 + (T-1)/t (or T/t for a chunk), h = H/p, w = W/p.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.input_spec import image_hw


def latent_frames(frames: int, temporal_patch: int, starts_video: bool = True) -> int:
    """Latent frames of a clip (or chunk) of `frames` frames."""
    if starts_video:
        if frames < 1 or (frames - 1) % temporal_patch:
            raise ValueError(f"a clip must have 1 + {temporal_patch}k frames, got {frames}")
        return 1 + (frames - 1) // temporal_patch
    if frames < 1 or frames % temporal_patch:
        raise ValueError(f"a chunk after the first frame must have {temporal_patch}k frames, got {frames}")
    return frames // temporal_patch


def frame_range(start: int, end: int, temporal_patch: int) -> tuple[int, int]:
    """Pixel frames [a, b) of latent frames [start, end): latent 0 is frame 0, latent j >= 1 is frames
    1 + t(j-1) .. t*j."""
    first = 0 if start == 0 else 1 + temporal_patch * (start - 1)
    return first, 1 + temporal_patch * (end - 1)


class _PatchNormLinear(nn.Module):
    def __init__(self, patch_numel: int, dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(patch_numel)
        self.proj = nn.Linear(patch_numel, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.proj(self.norm_in(x)))


class VideoPatchEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, T', h, w, D): the first frame alone, the rest in t x p x p patches."""

    def __init__(self, patch_size: int, temporal_patch: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.p, self.t = patch_size, temporal_patch
        self.first = _PatchNormLinear(in_channels * patch_size**2, dim)
        self.rest = _PatchNormLinear(in_channels * temporal_patch * patch_size**2, dim)

    def video_only_parameters(self) -> list[nn.Parameter]:
        """The later-frame weights: an image (one frame) never reaches them."""
        return list(self.rest.parameters())

    def forward(self, x: torch.Tensor, starts_video: bool = True) -> torch.Tensor:
        latent_frames(x.shape[2], self.t, starts_video)  # raises on a bad frame count
        parts = []
        if starts_video:
            first = rearrange(x[:, :, :1], "b c 1 (h p1) (w p2) -> b 1 h w (c p1 p2)", p1=self.p, p2=self.p)
            parts.append(self.first(first))  # (B, 1, h, w, D)
            x = x[:, :, 1:]
        if x.shape[2]:
            rest = rearrange(x, "b c (n pt) (h p1) (w p2) -> b n h w (c pt p1 p2)", pt=self.t, p1=self.p,
                             p2=self.p)
            parts.append(self.rest(rest))  # (B, k, h, w, D)
        return torch.cat(parts, dim=1)


class VideoPatchHead(nn.Module):
    """(B, T', h, w, D) -> (B, C, T, H, W): the mirror of `VideoPatchEmbed` (a linear map per patch)."""

    def __init__(self, patch_size: int, temporal_patch: int, out_channels: int, dim: int) -> None:
        super().__init__()
        self.p, self.t = patch_size, temporal_patch
        self.first = nn.Linear(dim, out_channels * patch_size**2)
        self.rest = nn.Linear(dim, out_channels * temporal_patch * patch_size**2)

    def video_only_parameters(self) -> list[nn.Parameter]:
        """The later-frame weights: an image (one frame) never reaches them."""
        return list(self.rest.parameters())

    def forward(self, z: torch.Tensor, starts_video: bool = True) -> torch.Tensor:
        parts = []
        if starts_video:
            parts.append(rearrange(self.first(z[:, :1]), "b 1 h w (c p1 p2) -> b c 1 (h p1) (w p2)",
                                   p1=self.p, p2=self.p))
            z = z[:, 1:]
        if z.shape[1]:
            parts.append(rearrange(self.rest(z), "b n h w (c pt p1 p2) -> b c (n pt) (h p1) (w p2)",
                                   pt=self.t, p1=self.p, p2=self.p))
        return torch.cat(parts, dim=2)


def patch_grid(image_size: int | tuple[int, int], patch_size: int) -> tuple[int, int, int, int]:
    """(H, W, rows, columns) of an image size cut into p x p patches; a size that is not a multiple is refused."""
    h, w = image_hw(image_size)
    if h % patch_size or w % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    return h, w, h // patch_size, w // patch_size
