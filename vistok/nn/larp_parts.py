"""Parts of the official LARP network (Wang et al. 2024) shared by its encoder and decoder
(`vistok.tokenizers.larp`, `vistok.decoders.larp`): the Conv3d patch embedding, the channels-last patch head, the
architecture check and the latent-frame count of each architecture."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.nn.patch3d import latent_frames


class ConvPatchEmbed3D(nn.Module):
    """(B, C, T, H, W) -> (B, T/t, H/p, W/p, D): a Conv3d with kernel = stride = (t, p, p) (LARP's PatchEmbed3D);
    every frame is in a t-frame patch, the first one too."""

    def __init__(self, patch_size: int, temporal_patch: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, (temporal_patch,) + (patch_size,) * 2,
                              stride=(temporal_patch,) + (patch_size,) * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(x), "b d t h w -> b t h w d")


class ChannelsLastPatchHead(nn.Module):
    """(B, T', h, w, D) -> (B, C, T' t, h p, w p): a linear map of each patch to its t x p x p x C values,
    channels last, as LARP's `final_layer` + `unpatchify`."""

    def __init__(self, patch_size: int, temporal_patch: int, out_channels: int, dim: int) -> None:
        super().__init__()
        self.p, self.t = patch_size, temporal_patch
        self.proj = nn.Linear(dim, temporal_patch * patch_size**2 * out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(z), "b n h w (pt p1 p2 c) -> b c (n pt) (h p1) (w p2)", pt=self.t, p1=self.p,
                         p2=self.p)


ARCHITECTURES = ("vistok", "official")


def check_architecture(architecture: str, h: int, w: int) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if architecture == "official" and h != w:
        raise ValueError(f"the official LARP network takes square frames, got {h} x {w}")


def larp_latent_frames(frames: int, temporal_patch: int, architecture: str) -> int:
    """Latent frames: 1 + (T-1)/t with the first frame alone (vistok), T/t (official)."""
    return latent_frames(frames, temporal_patch, starts_video=architecture != "official")
