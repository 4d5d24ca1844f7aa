"""A linear path around a tokenizer: whole image <-> all token channels, initialised from PCA.

Why: on our CPU budget every network trained from a random start stayed 5 dB below a plain PCA of the same
training crops on photos it had not seen (docs/benchmarks.md#early-calibration-on-the-cpu): the optimiser,
not the capacity, was the limit. Nested dropout on a *linear* autoencoder recovers PCA's ordered basis
(Rippel et al. 2014, "Learning ordered representations with nested dropout"), so PCA is also the natural
coarse-to-fine start for a 1D tokenizer: token k carries principal components [k*d, (k+1)*d). The encoder
adds `LinearEncoderPath` to its token outputs and the decoder adds `LinearDecoderPath` to its pixels; both
networks' last layers start at zero, so training starts at the (quantized) PCA solution and the transformers
learn what a linear map cannot.

Cost: C*H*W x N*d weights each way (0.6 M at 32 px with 32 x 6 token channels), so this is a small-image
device; at 256 px use the networks alone. `vistok.tokenizers.pca_init` fits both paths from data.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.input_spec import image_hw


class LinearEncoderPath(nn.Module):
    """(B, C, H, W) -> (B, N, d): one linear map of the flattened image."""

    def __init__(self, in_channels: int, image_size: int | tuple[int, int], num_tokens: int, token_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.token_dim = num_tokens, token_dim
        h, w = image_hw(image_size)
        self.proj = nn.Linear(in_channels * h * w, num_tokens * token_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1)).view(x.shape[0], self.num_tokens, self.token_dim)


class LinearDecoderPath(nn.Module):
    """codes (B, K, d) with valid (B, K) -> (B, C, H, W).

    Dropped or missing tokens contribute zero, the mean of a centred PCA coefficient, so any prefix decodes
    to the linear least-squares estimate from the components it carries."""

    def __init__(self, out_channels: int, image_size: int | tuple[int, int], num_tokens: int, token_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.token_dim, self.out_channels = num_tokens, token_dim, out_channels
        self.height, self.width = image_hw(image_size)
        self.proj = nn.Linear(num_tokens * token_dim, out_channels * self.height * self.width)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, k, d = codes.shape
        if valid is not None:
            codes = codes * valid[..., None].to(codes.dtype)
        if k < self.num_tokens:
            codes = torch.cat([codes, codes.new_zeros(b, self.num_tokens - k, d)], dim=1)  # (B, N, d)
        return self.proj(codes.flatten(1)).view(b, self.out_channels, self.height, self.width)


class VideoPatchLinearPath(nn.Module):
    """(B, C, T, H, W) -> (B, T', h, w, d): a linear map of each patch straight to its token's channels (the
    first frame alone in p x p patches, later frames in t x p x p patches, as `vistok.nn.patch3d`).

    The grid tokenizers' counterpart of `LinearEncoderPath`: a per-patch PCA (`patch_pca_init`) instead of a
    whole-image one, so the weights stay small (C t p^2 x d) and the map is the same at every position. The
    decoder's mirror is a `VideoPatchHead` with `dim` = d."""

    def __init__(self, patch_size: int, temporal_patch: int, in_channels: int, token_dim: int) -> None:
        super().__init__()
        self.p, self.t = patch_size, temporal_patch
        self.first = nn.Linear(in_channels * patch_size**2, token_dim)
        self.rest = nn.Linear(in_channels * temporal_patch * patch_size**2, token_dim)

    def video_only_parameters(self) -> list[nn.Parameter]:
        """The later-frame map: an image (one frame) never reaches it."""
        return list(self.rest.parameters())

    def patches(self, x: torch.Tensor, starts_video: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The first frame's patches (B, 1, h, w, C p^2) and the later ones (B, k, h, w, C t p^2), or None."""
        from einops import rearrange

        first = None
        if starts_video:
            first = rearrange(x[:, :, :1], "b c 1 (h p1) (w p2) -> b 1 h w (c p1 p2)", p1=self.p, p2=self.p)
            x = x[:, :, 1:]
        rest = None
        if x.shape[2]:
            rest = rearrange(x, "b c (n pt) (h p1) (w p2) -> b n h w (c pt p1 p2)", pt=self.t, p1=self.p, p2=self.p)
        return first, rest

    def forward(self, x: torch.Tensor, starts_video: bool = True) -> torch.Tensor:
        first, rest = self.patches(x, starts_video)
        parts = ([self.first(first)] if first is not None else []) + ([self.rest(rest)] if rest is not None else [])
        return torch.cat(parts, dim=1)
