"""LARP's video discriminator (Wang et al. 2024, "LARP: Tokenizing Videos with a Learned Autoregressive
Generative Prior"; the official `models/loss.py` `TransformerDiscriminator`): a ViT that judges a whole clip.

The clip goes through a Conv3d t x p x p patch embedding (LARP's `PatchEmbed3D`, `vistok.nn.larp_parts`) plus
frozen 3-D sine-cosine positions (`vistok.nn.sincos`), a learned class token is put in front, `depth`
pre-norm blocks run over [class, patches], and the class token's output goes through LayerNorm (eps 1e-6) and
a linear map to one logit per clip: (B, C, T, H, W) -> (B, 1). Initialised as LARP's: Xavier-uniform linear
layers (the patch embedding as a linear map), zero biases, a Xavier-uniform class token. The official config
(cfgs/larp_tokenizer.yaml): width 384, 8 layers, 12 heads, 4 x 8 x 8 patches; its training scripts (the released
LARP-L-long's included) override it to width 512, 12 layers, 8 heads (configs/larp_l.yaml). The positions are
computed for the clip it is given (square frames, whole patches), so one network takes any clip size its tokenizer
takes; LARP builds them for its 16 x 128 x 128 clips once.

Departure: the blocks are vistok's (`vistok.nn.blocks`) in the timm-1.0.9 form LARP's tokenizer uses (no qkv
bias, exact GELU, LayerNorm eps 1e-5); the official discriminator's fused blocks are not compared weight for
weight (no released discriminator weights exist to import).
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.nn.blocks import Transformer
from vistok.nn.larp_parts import ConvPatchEmbed3D
from vistok.nn.sincos import sincos_3d


@configurable
class TransformerDiscriminator(nn.Module):
    """(B, in_channels, T, H, W) clips in [-1, 1] -> (B, 1) real/fake logits, one per clip."""

    def __init__(self, patch_size: int = 8, temporal_patch: int = 4, in_channels: int = 3, width: int = 384,
                 depth: int = 8, num_heads: int = 12) -> None:
        super().__init__()
        if width % num_heads or width % 4:
            raise ValueError(f"TransformerDiscriminator: width ({width}) must be a multiple of num_heads ({num_heads}) "
                             "and of 4 (its sine-cosine positions)")
        self.in_channels, self.width = in_channels, width
        self.patch_size, self.temporal_patch = patch_size, temporal_patch
        self.embed = ConvPatchEmbed3D(patch_size, temporal_patch, in_channels, width)
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.transformer = Transformer(width, depth, num_heads, qkv_bias=False, gelu="exact", norm_eps=1e-5)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.fc = nn.Linear(width, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        w = self.embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.embed.proj.bias)
        nn.init.xavier_uniform_(self.cls_token.view(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, t = self.patch_size, self.temporal_patch
        if (x.ndim != 5 or x.shape[1] != self.in_channels or x.shape[-1] != x.shape[-2] or x.shape[-1] % p
                or x.shape[2] % t):
            raise ValueError(f"TransformerDiscriminator expects (B, {self.in_channels}, T, H, H) clips with T a "
                             f"multiple of {t} and H of {p}, got {tuple(x.shape)}")
        pos = sincos_3d(self.width, x.shape[-1] // p, x.shape[2] // t).to(x.device, x.dtype)  # frozen, (L, D)
        tokens = self.embed(x).flatten(1, 3) + pos  # (B, L, D)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.fc(self.norm(self.transformer(tokens)[:, 0]))  # (B, 1)
