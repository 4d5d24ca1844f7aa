"""FlexTok's register encoder ("FlexTok: Resampling Images into 1D Token Sequences of Flexible Length",
Bachmann et al. 2025).

Registers (latent tokens) attend to every patch and, causally, to earlier registers only; patches do not
attend to registers. Token i therefore depends only on the image and tokens < i, which together with nested
dropout gives an ordered, coarse-to-fine sequence. Departures: FlexTok encodes VAE latents; this encoder
takes pixels (or any (C, H, W) input with `in_channels`), and it is TiTok's encoder with a causal register
mask, so the two share every other layer.

`FlexTokVAEEncoder` is the released architecture itself (VAE latents, FlexBlock numerics, frozen sin-cos
positions), the encoder of the `flextok-d*-d*` variants and of imported FlexTok checkpoints.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.input_spec import InputSpec, image_hw
from vistok.nn.flex import FlexTransformer, fp32_layer_norm
from vistok.nn.sincos import flextok_sincos_2d
from vistok.tokenizers.encoder import Encoder
from vistok.tokenizers.titok import TiTokEncoder


@configurable
class FlexTokEncoder(TiTokEncoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        in_channels: int = 3,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_tokens: int = 256,
        token_dim: int = 6,
        mlp_ratio: float = 4.0,
        stem: str = "linear",
        qk_norm: bool = True,
    ) -> None:
        super().__init__(
            image_size=image_size, patch_size=patch_size, in_channels=in_channels, width=width, depth=depth,
            num_heads=num_heads, num_tokens=num_tokens, token_dim=token_dim, mlp_ratio=mlp_ratio, stem=stem,
            qk_norm=qk_norm, causal_tokens=True,
        )


@configurable
class FlexTokVAEEncoder(Encoder):
    """FlexTok's encoder as the released code computes it: a frozen diffusers AutoencoderKL turns the image into
    latents (a posterior sample times the VAE's scaling factor), 2x2 latent patches are embedded linearly with
    frozen 2D sin-cos positions, `num_tokens` learned registers are appended, and a FlexBlock transformer
    (`vistok.nn.flex`) runs with the `causal_last` mask: patches attend to patches, register i to every patch
    and to registers <= i. A non-affine LayerNorm and a linear head map the registers to `token_dim` FSQ inputs.

    `vae_path`: a local AutoencoderKL directory (None: the patches are cut from the pixels; for CPU tests and
    configs without a VAE). `patch_size` counts pixels in both spaces, as `FlowDecoder`'s: with FlexTok's 8x VAE,
    16 px is its latent patch 2, so a config runs with or without a VAE at the same sequence length.
    `latent_scale`: overrides the VAE's scaling_factor. `latent_channels`: the VAE's latent channels the config
    expects (FlexTok's: 16); a VAE with other latents is refused by name (None: any).
    `sample_posterior`: FlexTok samples the posterior (its encoder is then stochastic: fix torch's seed for
    repeatable ids); False takes the mean. `pos_grid`: the (rows, columns) of the sin-cos table, cropped to the
    patch grid (FlexTok builds it for its largest grid). Shapes: images (B, 3, H, W) -> latents (B, C, h, w) ->
    patches (B, h/p * w/p, D) + registers (B, N, D) -> tokens (B, N, token_dim).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        vae_path: str | None = None,
        latent_scale: float | None = None,
        sample_posterior: bool = True,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        num_tokens: int = 256,
        token_dim: int = 6,
        pos_grid: tuple[int, int] | None = None,
        latent_channels: int | None = None,
    ) -> None:
        super().__init__()
        from vistok.decoders.latent import FrozenVAE

        h, w = image_hw(image_size)
        self.input_spec = InputSpec(3, h, w, "1")
        self.image_size = h if h == w else (h, w)
        # FlexTok scales latents by the VAE's scaling factor only (no shift_factor).
        self.vae = None if vae_path is None else FrozenVAE(vae_path, latent_scale, 0.0,
                                                          sample_posterior=sample_posterior)
        if self.vae is not None:
            self.vae.check_channels(latent_channels, "FlexTokVAEEncoder")
        factor = 1 if self.vae is None else self.vae.downsample
        self.channels = 3 if self.vae is None else self.vae.channels
        if h % patch_size or w % patch_size or patch_size % factor:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}, itself a "
                             f"multiple of the VAE's downsampling {factor}")
        self.patch = patch_size // factor  # the patch side in the VAE's latent grid (or in pixels)
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.num_tokens, self.token_dim = num_tokens, token_dim
        pos_grid = tuple(pos_grid) if pos_grid is not None else self.grid
        if pos_grid[0] < self.grid[0] or pos_grid[1] < self.grid[1]:
            raise ValueError(f"pos_grid {pos_grid} is smaller than the patch grid {self.grid}")
        table = flextok_sincos_2d(pos_grid[0], pos_grid[1], width)[: self.grid[0], : self.grid[1]]
        self.register_buffer("pos", table.reshape(1, self.num_patches, width), persistent=False)
        self.patch_proj = nn.Linear(self.channels * self.patch * self.patch, width)
        self.registers = nn.Parameter(torch.empty(num_tokens, width))
        self.transformer = FlexTransformer(width, depth, head_dim, mlp_ratio)
        self.to_latents = nn.Linear(width, token_dim)
        nn.init.xavier_uniform_(self.patch_proj.weight)
        nn.init.zeros_(self.patch_proj.bias)
        nn.init.trunc_normal_(self.registers, std=0.02)
        nn.init.zeros_(self.to_latents.weight)  # FlexTok's zero-initialised readout
        nn.init.zeros_(self.to_latents.bias)
        mask = torch.zeros(self.num_patches + num_tokens, self.num_patches + num_tokens, dtype=torch.bool)
        mask[:, : self.num_patches] = True
        mask[self.num_patches :, self.num_patches :] = torch.ones(num_tokens, num_tokens, dtype=torch.bool).tril()
        self.register_buffer("attn_mask", mask, persistent=False)

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> what the patches are cut from: scaled VAE latents (B, C, h, w), or the pixels."""
        return images if self.vae is None else self.vae.encode(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_latents(self.latents(x))

    def encode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, N, token_dim)."""
        b = latents.shape[0]
        p = rearrange(latents, "b c (h p) (w q) -> b (h w) (p q c)", p=self.patch, q=self.patch)
        tokens = torch.cat([self.patch_proj(p) + self.pos, self.registers.expand(b, -1, -1)], dim=1)
        out = self.transformer(tokens, self.attn_mask)[:, self.num_patches :]  # (B, N, D)
        return self.to_latents(fp32_layer_norm(out))
