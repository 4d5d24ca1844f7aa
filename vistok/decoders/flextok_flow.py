"""`FlexTokFlowDecoder`: FlexTok's rectified-flow decoder as the released inference code computes it
("FlexTok: Resampling Images into 1D Token Sequences of Flexible Length", Bachmann et al. 2025).

The velocity network (`forward`): the noised VAE latents (B, C, h, w) are cut into 2x2 patches, embedded
linearly with frozen 2D sin-cos positions; the token codes (B, N, d) are projected to the width and get a
learned position per register; positions past a sequence's length (nested dropout, a short prefix, padding)
become a learned mask token, and the classifier-free-guidance null condition replaces every register by a
learned null embedding. Patches and registers run through FlexBlocks (`vistok.nn.flex`) with full attention and
adaLN-zero modulation by the time embedding (expansion 2: one set of vectors for the patches, one for the
registers); the time embedding is DiT's sinusoidal MLP with max_period 256 on t * 1000 / `max_timestep`.
The head is a non-affine LayerNorm, adaLN (shift, scale) and a linear map to the patches' values.

The objective (`objective=`, `RectifiedFlow`) and the sampler (`sampler=`, `FlexTokEulerSampler`: t = i / T
uniform, CFG or APG) are separate objects. `repa` (a `vistok.decoders.repa.REPA`) adds the paper's
representation alignment loss in training (not in the released code; see there).

Departures: one batch tensor instead of packed per-image lists (the same masks and sums; padding to multiples
of 128 for flex attention is not needed with SDPA); in training the flow's clean target is a second posterior
sample of the VAE (the released training code is not public; its inference code reuses the encoder's sample).
Shapes: x_t (B, C, h, w), t (B,), context (B, N, D) -> velocity (B, C, h, w).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.decoders.latent import FrozenVAE
from vistok.decoders.rectified_flow import FlexTokEulerSampler, RectifiedFlow
from vistok.input_spec import InputSpec, image_hw
from vistok.nn.flex import FlexTransformer, fp32_layer_norm
from vistok.nn.sincos import flextok_sincos_2d


class FlexTimeEmbedding(nn.Module):
    """t (B,) -> (B, D): [cos, sin] of t * (1000 / max_timestep) * 256^(-k / (F/2)), then Linear-SiLU-Linear."""

    def __init__(self, dim: int, frequencies: int = 256, max_timestep: float = 1000.0,
                 max_period: float = 256.0) -> None:
        super().__init__()
        self.frequencies, self.max_timestep, self.max_period = frequencies, float(max_timestep), float(max_period)
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = (1000.0 / self.max_timestep) * torch.exp(
            -math.log(self.max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
        args = t[:, None].float() * freqs[None]  # (B, F/2)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.frequencies % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return self.mlp(emb)


@configurable
class FlexTokFlowDecoder(Decoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        vae_path: str | None = None,
        latent_scale: float | None = None,
        sample_posterior: bool = True,
        latent_cache: str | None = None,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        num_tokens: int = 256,
        token_dim: int = 6,
        pos_grid: tuple[int, int] | None = None,
        max_timestep: float = 1000.0,
        objective: RectifiedFlow | None = None,
        sampler: FlexTokEulerSampler | None = None,
        repa: nn.Module | None = None,
        latent_channels: int | None = None,
    ) -> None:
        """`vae_path`: a local diffusers AutoencoderKL directory (None: the flow runs on pixels). `patch_size`
        counts pixels in both spaces (16 = FlexTok's latent patch 2 with its 8x VAE). `latent_scale` overrides
        its scaling_factor (FlexTok applies no shift).
        `sample_posterior`: the training target is a posterior sample (FlexTok) or its mean. `latent_cache`:
        see `vistok.decoders.latent_cache` (the posterior's moments are cached, the sample drawn after).
        `max_timestep`: the time embedding sees t * 1000 / max_timestep (1000: t in [0, 1] as is).
        `pos_grid`: the (rows, columns) of the sin-cos table, cropped to the patch grid. `latent_channels`: the
        VAE's latent channels the config expects (a VAE with others is refused by name; None: any)."""
        super().__init__()
        h, w = image_hw(image_size)
        self.vae = None if vae_path is None else FrozenVAE(vae_path, latent_scale, 0.0, latent_cache,
                                                          sample_posterior=sample_posterior)
        if self.vae is not None:
            self.vae.check_channels(latent_channels, "FlexTokFlowDecoder")
        factor = 1 if self.vae is None else self.vae.downsample
        self.channels = 3 if self.vae is None else self.vae.channels
        if h % patch_size or w % patch_size or patch_size % factor:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}, itself a "
                             f"multiple of the VAE's downsampling {factor}")
        self.output_spec = InputSpec(3, h, w, "1")
        self.image_size = h if h == w else (h, w)
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
        self.from_latents = nn.Linear(token_dim, width)
        self.register_pos = nn.Parameter(torch.empty(1, num_tokens, width))
        self.mask_token = nn.Parameter(torch.empty(width))  # positions past a sequence's length
        self.null_token = nn.Parameter(torch.empty(width))  # the CFG null condition, at every position
        self.time_embed = FlexTimeEmbedding(width, max_timestep=max_timestep)
        self.transformer = FlexTransformer(width, depth, head_dim, mlp_ratio, adaln_expansion=2)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out_proj = nn.Linear(width, self.patch * self.patch * self.channels)
        for layer in (self.patch_proj, self.from_latents):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        for p in (self.register_pos, self.mask_token, self.null_token):
            nn.init.trunc_normal_(p, std=0.02)
        for layer in (self.out_modulation[-1], self.out_proj):  # the network starts by predicting 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.objective = RectifiedFlow() if objective is None else objective
        self.sampler = FlexTokEulerSampler() if sampler is None else sampler
        self.repa = repa
        if repa is not None:
            if not 0 <= repa.layer < depth:
                raise ValueError(f"repa.layer {repa.layer} is not a decoder block (0..{depth - 1})")
            repa.build(width)
        self.generator: torch.Generator | None = None  # training draws (see FlowDecoder)

    generative = True
    sampler_arguments = ("steps", "guidance_scale", "seed")

    @property
    def default_steps(self) -> int:
        return self.sampler.steps

    # --- the velocity network ------------------------------------------------------------------------------
    def condition(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool or None -> context (B, N, D). Positions >= K and
        invalid ones hold the mask token (FlexTok pads ids with 0 and masks them)."""
        b, k, _ = codes.shape
        if k < self.num_tokens:
            codes = torch.cat([codes, codes.new_zeros(b, self.num_tokens - k, codes.shape[2])], dim=1)
        keep = torch.zeros(b, self.num_tokens, dtype=torch.bool, device=codes.device)
        keep[:, :k] = True if valid is None else valid
        ctx = self.from_latents(codes.to(self.from_latents.weight.dtype)) + self.register_pos  # (B, N, D)
        return torch.where(keep[..., None], ctx, self.mask_token.to(ctx.dtype))

    def null_condition(self, batch: int) -> torch.Tensor:
        """The learned null condition (B, N, D)."""
        return self.null_token.expand(batch, self.num_tokens, -1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self._network(x_t, t, context)[0]

    def _network(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                 return_layers: tuple[int, ...] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, h, w), (B,), (B, N, D) -> velocity (B, C, h, w) and the patch tokens of `return_layers`."""
        p = rearrange(x_t, "b c (h p) (w q) -> b (h w) (p q c)", p=self.patch, q=self.patch)
        patches = self.patch_proj(p.to(self.patch_proj.weight.dtype)) + self.pos  # (B, L, D)
        emb = self.time_embed(t)  # (B, D)
        out = self.transformer(torch.cat([patches, context.to(patches.dtype)], dim=1), None, emb,
                               (self.num_patches, self.num_tokens), return_layers)
        h, layers = out if return_layers else (out, [])
        shift, scale = self.out_modulation(emb)[:, None].chunk(2, dim=-1)  # (B, 1, D) each
        y = self.out_proj(fp32_layer_norm(h[:, : self.num_patches]) * (1 + scale) + shift)
        v = rearrange(y, "b (h w) (p q c) -> b c (h p) (w q)", h=self.grid[0], p=self.patch, q=self.patch)
        return v, [layer[:, : self.num_patches] for layer in layers]

    # --- the two decoder entry points ----------------------------------------------------------------------
    def to_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> the flow's space: scaled VAE latents, or the pixels themselves."""
        return images if self.vae is None else self.vae.encode(images, self.generator)

    def training_loss(self, codes: torch.Tensor, valid: torch.Tensor | None,
                      images: torch.Tensor) -> tuple[torch.Tensor, None]:
        context = self.condition(codes, valid)
        null = self.null_condition(codes.shape[0])
        x0 = self.to_space(images)
        if self.repa is None:
            return self.objective.loss(self, x0, context, null, self.generator), None
        layer = (self.repa.layer,)
        taken: list[torch.Tensor] = []

        def velocity(x_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            v, hidden = self._network(x_t, t, ctx, layer)
            taken.extend(hidden)
            return v

        loss = self.objective.loss(velocity, x0, context, null, self.generator)
        return loss + self.repa(taken[0], images, self.grid), None

    def reconstruct(self, codes: torch.Tensor, valid: torch.Tensor | None = None, steps: int | None = None,
                    guidance_scale: float = 1.0, seed: int = 0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample images (B, 3, H, W) (unclamped) for codes (B, K, d); `noise` (B, C, h, w): the starting point
        instead of the sampler's draw from `seed`."""
        context = self.condition(codes, valid)
        null = None if float(guidance_scale) == 1.0 else self.null_condition(codes.shape[0])
        shape = (self.channels, self.grid[0] * self.patch, self.grid[1] * self.patch)
        x = self.sampler.sample(self, shape, context, null, steps, guidance_scale, seed, noise)
        return x if self.vae is None else self.vae.decode(x)
