"""The decoder of the LARP-style 1D video tokenizer (Wang et al. 2024): learned patch queries read the (possibly
partial) holistic tokens and a head maps each to its t x p x p patch; the mirror of
`vistok.tokenizers.larp.LARPEncoder` (whose docstring says where it departs from the paper).

Shapes: (B, K, d), K <= N -> (B, C, T, H, W).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.input_spec import InputSpec
from vistok.nn.attention import key_padding_mask
from vistok.nn.blocks import Transformer
from vistok.nn.larp_parts import ChannelsLastPatchHead, check_architecture, larp_latent_frames
from vistok.nn.patch3d import VideoPatchHead, patch_grid
from vistok.nn.sincos import sincos_1d, sincos_3d
from vistok.nn.token_fill import TokenFill


@configurable
class LARPDecoder(Decoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 128,
        num_frames: int = 17,
        patch_size: int = 8,
        temporal_patch: int = 4,
        out_channels: int = 3,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_tokens: int = 1024,
        token_dim: int = 16,
        mlp_ratio: float = 4.0,
        token_fill: str = "mask",
        qk_norm: bool = False,
        architecture: str = "vistok",
    ) -> None:
        super().__init__()
        h, w, gh, gw = patch_grid(image_size, patch_size)
        check_architecture(architecture, h, w)
        self.architecture = architecture
        self.output_spec = InputSpec(out_channels, h, w, str(num_frames))
        self.image_size = h if h == w else (h, w)
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.grid = (larp_latent_frames(num_frames, temporal_patch, architecture), gh, gw)
        self.num_patches = self.grid[0] * gh * gw
        scale = width**-0.5
        if architecture == "official":
            self.token_fill = None
            self.latent_proj = nn.Linear(token_dim, width)
            self.register_buffer("latent_pos", sincos_1d(width, torch.arange(num_tokens))[None])
            self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, width))  # the patch queries' type embedding
            self.register_buffer("patch_pos", sincos_3d(width, gh, self.grid[0])[None])
            self.norm_pre, self.norm_post = nn.Identity(), nn.LayerNorm(width, eps=1e-6)
            self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, qkv_bias=False,
                                           gelu="exact", norm_eps=1e-5)
            self.head = ChannelsLastPatchHead(patch_size, temporal_patch, out_channels, width)
        else:
            self.token_fill = TokenFill(num_tokens, token_dim, width, token_fill)
            self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
            self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
            self.norm_pre = nn.LayerNorm(width)
            self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
            self.norm_post = nn.LayerNorm(width)
            self.head = VideoPatchHead(patch_size, temporal_patch, out_channels, width)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool or None -> (B, C, T, H, W), unclamped."""
        b = codes.shape[0]
        if self.architecture == "official":
            return self._official(codes, valid)
        tokens, key_valid = self.token_fill(codes, valid)  # (B, N or K, D)
        mask = None if key_valid is None else key_padding_mask(key_valid, prefix=self.num_patches)
        queries = (self.mask_token + self.patch_pos).expand(b, -1, -1).to(tokens.dtype)  # (B, L, D)
        y = self.transformer(self.norm_pre(torch.cat([queries, tokens], dim=1)), mask)
        t, h, w = self.grid
        z = rearrange(self.norm_post(y[:, : self.num_patches]), "b (t h w) d -> b t h w d", t=t, h=h, w=w)
        return self.head(z)


    def _official(self, codes: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        if codes.shape[1] != self.num_tokens or (valid is not None and not bool(valid.all())):
            raise ValueError(f"the official LARP decoder decodes all {self.num_tokens} tokens, got "
                             f"{codes.shape[1]}{' with some masked' if valid is not None else ''}")
        b = codes.shape[0]
        latents = self.latent_proj(codes) + self.latent_pos.to(codes.dtype)  # (B, N, D)
        queries = (self.patch_pos + self.mask_token).expand(b, -1, -1).to(latents.dtype)  # (B, L, D)
        y = self.transformer(torch.cat([latents, queries], dim=1))[:, self.num_tokens:]
        t, h, w = self.grid
        return self.head(rearrange(self.norm_post(y), "b (t h w) d -> b t h w d", t=t, h=h, w=w))
