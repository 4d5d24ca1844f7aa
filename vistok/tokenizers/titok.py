"""TiTok's 1D latent-token encoder ("An Image is Worth 32 Tokens for Reconstruction and Generation",
Yu et al. 2024).

Patches and N learnable latent tokens (each with its own position embedding) go through one pre-norm ViT;
the N latent outputs are normed and projected to the token dimension. Options that reproduce the official
models exactly (`vistok.importers.titok` switches them on; defaults are our corrected form for training from
scratch):
- `class_token=True`: a learned class token before the patches (the patch position table then has L+1 rows,
  row 0 the class token's), as TiTok's encoder has;
- `projection="legacy"`: TiTok's released S/B/L checkpoints read the normed (B, N, D) latents as a (B, D, N)
  array without a permute before the 1x1 projection, which mixes channels across token positions. The default
  `"linear"` is a per-token linear map on (B, N, D) (the official `is_legacy: False`);
- `gelu="exact"`, `norm_eps=1e-5`: the official blocks' numerics (ours: tanh GELU, eps 1e-6);
- `zero_one_pixels=True`: the network computes on [0, 1] pixels (the official convention); the input stays in
  [-1, 1] at vistok's boundary and is converted here.
Other departures:
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
        class_token: bool = False,
        projection: str = "linear",
        gelu: str = "tanh",
        norm_eps: float = 1e-6,
        zero_one_pixels: bool = False,
    ) -> None:
        """`image_size`: the side of square images, or (height, width). See the module docstring for
        `class_token`, `projection`, `gelu`, `norm_eps` and `zero_one_pixels`."""
        super().__init__()
        if projection not in ("linear", "legacy"):
            raise ValueError(f"projection must be 'linear' or 'legacy', got {projection!r}")
        h, w = image_hw(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.input_spec = InputSpec(in_channels, h, w, "1")
        self.image_size = h if h == w else (h, w)  # as given: an int for square images
        self.in_channels = in_channels
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.num_patches = (h // patch_size) * (w // patch_size)
        self.causal_tokens = causal_tokens
        self.projection, self.zero_one_pixels = projection, zero_one_pixels
        self.prefix = self.num_patches + int(class_token)  # positions before the latent tokens
        scale = width**-0.5
        self.stem = build_stem(stem, patch_size, in_channels, width, stem_channels)
        self.class_token = nn.Parameter(scale * torch.randn(1, 1, width)) if class_token else None
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.prefix, width))  # row 0: the class token's
        self.latent_tokens = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.latent_pos = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, gelu=gelu, norm_eps=norm_eps)
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
        # (L+N, L+N): patches (and the class token) see patches; token i sees all patches and tokens <= i.
        L, N = self.prefix, self.num_tokens
        mask = torch.zeros(L + N, L + N, dtype=torch.bool)
        mask[:, :L] = True
        mask[L:, L:] = torch.ones(N, N, dtype=torch.bool).tril()
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) as `input_spec` says -> (B, N, token_dim)."""
        b = x.shape[0]
        patches = self.stem((x + 1) / 2 if self.zero_one_pixels else x)  # (B, L, D)
        if self.class_token is not None:
            patches = torch.cat([self.class_token.expand(b, -1, -1).to(patches.dtype), patches], dim=1)
        patches = patches + self.patch_pos  # (B, L(+1), D)
        latents = (self.latent_tokens + self.latent_pos).expand(b, -1, -1)  # (B, N, D)
        h = self.transformer(self.norm_pre(torch.cat([patches, latents], dim=1)), self.attn_mask)
        h = self.norm_post(h[:, -self.num_tokens :])  # (B, N, D)
        if self.projection == "legacy":  # the (B, N, D) memory read as (B, D, N), then per-column projection
            h = h.reshape(b, -1, self.num_tokens).transpose(1, 2)  # (B, N, D), channels mixed across tokens
        z = self.proj(h)  # (B, N, token_dim)
        return z if self.linear_path is None else z + self.linear_path(x)
