"""A linear path around a tokenizer: whole image <-> all token channels, initialised from PCA.

Why: on our CPU budget every network trained from a random start stayed 5 dB below a plain PCA of the same
training crops on photos it had not seen (DESIGN.md, second calibration): the optimiser, not the capacity,
was the limit. Nested dropout on a *linear* autoencoder recovers PCA's ordered basis (Rippel et al. 2014,
"Learning ordered representations with nested dropout"), so PCA is also the natural coarse-to-fine start for
a 1D tokenizer: token k carries principal components [k*d, (k+1)*d). The encoder adds `LinearEncoderPath` to
its token outputs and the decoder adds `LinearDecoderPath` to its pixels; both networks' last layers start at
zero, so training starts at the (quantized) PCA solution and the transformers learn what a linear map cannot.

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
