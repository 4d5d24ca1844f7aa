"""TiTok's proxy-code head (Yu et al. 2024, two-stage training): the decoder ViT's patch outputs predict, per
patch, logits over a MaskGIT-VQGAN codebook; their softmax weights the codebook into soft codes, which the
MaskGIT-VQGAN conv decoder turns into pixels.

Stage 1 trains on cross-entropy between `logits` and the proxy codes a frozen MaskGIT-VQGAN gives the image;
stage 2 (and inference) decodes through `forward`. Layout as the released checkpoints: `ffn` is a 1x1 conv
width -> 2 width, tanh, 1x1 conv -> V (here linear maps on (B, L, D), the same computation), `codebook` the
MaskGIT-VQGAN's (V, C) embedding, `pixel_decoder` its conv decoder (`vistok.decoders.maskgit_vqgan`).

Shapes: (B, L, D) patch features -> logits (B, L, V) -> soft codes (B, C, gh, gw) -> pixels (B, 3, 16gh, 16gw)
in [-1, 1] (the conv decoder's [0, 1] output, converted).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.decoders.maskgit_vqgan import DEFAULT_MULT, MaskGITDecoder
from vistok.nn.patch import grid_hw


class ProxyCodeHead(nn.Module):
    def __init__(self, width: int, grid: int | tuple[int, int], patch_size: int = 16, out_channels: int = 3,
                 codebook_size: int = 1024, code_dim: int = 256, hidden_channels: int = 128,
                 channel_mult: tuple[int, ...] = DEFAULT_MULT, num_res_blocks: int = 2) -> None:
        super().__init__()
        self.grid = grid_hw(grid)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, codebook_size))
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) / code_dim**0.5)  # (V, C)
        self.pixel_decoder = MaskGITDecoder(out_channels, hidden_channels, channel_mult, num_res_blocks, code_dim)
        if self.pixel_decoder.stride != patch_size:
            raise ValueError(f"a proxy-code head upsamples by {self.pixel_decoder.stride} (2^(len(channel_mult)-1)); "
                             f"the decoder's patch_size is {patch_size}")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, V) logits over the proxy codebook."""
        return self.ffn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        soft = self.logits(x).softmax(-1) @ self.codebook.to(x.dtype)  # (B, L, C)
        soft = rearrange(soft, "b (h w) c -> b c h w", h=self.grid[0], w=self.grid[1])
        return self.pixel_decoder(soft) * 2 - 1  # (B, 3, H, W)
