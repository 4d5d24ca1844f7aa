"""TiTok's 1D latent-token encoder ("An Image is Worth 32 Tokens for Reconstruction and Generation",
Yu et al. 2024).

Patches and N learnable latent tokens (each with its own position embedding) go through one pre-norm ViT;
the N latent outputs are normed and projected to the token dimension. Departures:
- the projection is a per-token linear map on (B, N, D); TiTok's legacy reshape of the (B, D, N) output
  without a permute (which mixes channels across token positions) is not reproduced;
- optional hybrid conv stem (`stem="conv"`) for tiny images;
- any height x width (`image_size=(H, W)`), not only square images: the patch grid is H/p x W/p;
- optional linear path (`linear_path=True`, small images only): a linear map of the whole image is added to
  the token outputs and the output projection starts at zero, so a PCA initialisation
  (`vistok.tokenizers.pca_init`) is the starting point (see `vistok.nn.linear_path`);
- optional causal token attention (`causal_tokens=True`, FlexTok's register encoder): latent token i attends
  to every patch and to tokens <= i, and patches do not attend to tokens, so token i never depends on the
  tokens after it.

Shapes: images (B, C, H, W) -> patches (B, H/p * W/p, D) + latents (B, N, D) -> tokens (B, N, token_dim).
The input is not checked here: `Tokenizer` checks it against `input_spec` in one place.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.input_spec import InputSpec, image_hw
from vistok.nn.blocks import Transformer
from vistok.nn.linear_path import LinearEncoderPath
from vistok.nn.patch import build_stem
from vistok.tokenizers.encoder import Encoder


@configurable
class TiTokEncoder(Encoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        in_channels: int = 3,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        num_tokens: int = 128,
        token_dim: int = 12,
        mlp_ratio: float = 4.0,
        stem: str = "linear",
        qk_norm: bool = False,
        causal_tokens: bool = False,
        stem_channels: list[int] | None = None,
        linear_path: bool = False,
    ) -> None:
        """`image_size`: the side of square images, or (height, width)."""
        super().__init__()
        h, w = image_hw(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.input_spec = InputSpec(in_channels, h, w, "1")
        self.image_size = h if h == w else (h, w)  # as given: an int for square images
        self.in_channels = in_channels
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.num_patches = (h // patch_size) * (w // patch_size)
        self.causal_tokens = causal_tokens
        scale = width**-0.5
        self.stem = build_stem(stem, patch_size, in_channels, width, stem_channels)
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
        self.latent_tokens = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.latent_pos = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
        self.norm_post = nn.LayerNorm(width)
        self.proj = nn.Linear(width, token_dim)
        self.linear_path = LinearEncoderPath(in_channels, (h, w), num_tokens, token_dim) if linear_path else None
        if linear_path:  # the transformer starts as a zero residual on the linear (PCA) tokens
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        if causal_tokens:
            self.register_buffer("attn_mask", self._register_mask(), persistent=False)
        else:
            self.attn_mask = None

    def _register_mask(self) -> torch.Tensor:
        # (L+N, L+N): patches see patches; token i sees all patches and tokens <= i.
        L, N = self.num_patches, self.num_tokens
        mask = torch.zeros(L + N, L + N, dtype=torch.bool)
        mask[:, :L] = True
        mask[L:, L:] = torch.ones(N, N, dtype=torch.bool).tril()
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) as `input_spec` says -> (B, N, token_dim)."""
        b = x.shape[0]
        patches = self.stem(x) + self.patch_pos  # (B, L, D)
        latents = (self.latent_tokens + self.latent_pos).expand(b, -1, -1)  # (B, N, D)
        h = self.transformer(self.norm_pre(torch.cat([patches, latents], dim=1)), self.attn_mask)
        z = self.proj(self.norm_post(h[:, -self.num_tokens :]))  # (B, N, token_dim)
        return z if self.linear_path is None else z + self.linear_path(x)
