"""`FlowDecoder`: a rectified-flow decoder from token codes to images, as in FlexTok (Bachmann et al. 2025).

The velocity network is a DiT-style transformer (Peebles & Xie 2023) over the noised image patches, in pixel
space or in the latent space of a frozen diffusers `AutoencoderKL` (`vae_path`), with the projected token
sequence concatenated in context (FlexTok) and adaLN-zero modulation by the timestep; attention is SDPA.
Missing tokens (a prefix K < N, nested-dropout drops, padding of a variable-length batch) become a learned
"dropped" embedding (`vistok.nn.token_fill.TokenFill`, mode "mask", shared with `ViTPixelDecoder`), so the
network always sees N token positions and any K in 1..N decodes. A learned null token at every position is
the condition dropped for classifier-free guidance.

The module composes three separate objects (DiT style): this network, the objective (`objective=`, a
`RectifiedFlow`) and the sampler (`sampler=`, an `EulerSampler`) of `vistok.decoders.rectified_flow`, each
given to the constructor (None: the default one). It exposes the two entry points every vistok decoder
offers: `training_loss(codes, valid, images)` for the trainer and `reconstruct(codes, valid, **sampling)`
for `Tokenizer.decode`. An export written before the objective and sampler were objects (flat arguments
`cond_drop_prob`, `logit_mean`, `logit_std`, `sampler_shift`, `sample_steps`) still loads
(`FlowDecoder.upgrade_init_args`).

Shapes: noised input (B, C, h, w) -> patches (B, h/p * w/p, D), with the tokens' context (B, N, D) in the
sequence -> velocity (B, C, h, w); any height x width (`image_size=(H, W)`).

`patch_size` is in pixels in both spaces: with an 8x-downsampling VAE, patch 16 is FlexTok's latent patch 2,
so the sequence length does not depend on the space. Departures from FlexTok: no REPA loss, plain CFG, the
VAE posterior mean (not a sample) as target, one absolute learned position embedding per patch, and an optional
x0-prediction head (`prediction="sample"`, after JiT: Li & He 2025, "Back to Basics: Let Denoising Generative
Models Denoise"): in pixel space a narrow network cannot carry the per-pixel noise a velocity head must
output, while the clean image is low-dimensional; the loss stays on the velocity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vistok.configurable import class_path, configurable
from vistok.decoders.base import Decoder
from vistok.decoders.latent import FrozenVAE
from vistok.decoders.rectified_flow import EulerSampler, RectifiedFlow
from vistok.input_spec import InputSpec, image_hw
from vistok.nn.blocks import Transformer
from vistok.nn.patch import PatchEmbed2D, unpatchify
from vistok.nn.token_fill import TokenFill, legacy_keys

PREDICTIONS = ("velocity", "sample", "preconditioned")
# The flat arguments of older exports: {old FlowDecoder argument: (object, its argument)}.
_LEGACY_ARGS = {"cond_drop_prob": ("objective", "cond_drop_prob"), "logit_mean": ("objective", "logit_mean"),
                "logit_std": ("objective", "logit_std"), "sampler_shift": ("sampler", "shift"),
                "sample_steps": ("sampler", "steps")}


class TimestepEmbedding(nn.Module):
    """DiT's timestep embedder: sinusoidal features of 1000 * sigma -> MLP -> (B, D)."""

    def __init__(self, dim: int, frequencies: int = 256) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        args = 1000.0 * sigma.float()[:, None] * freqs[None]  # (B, F/2)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


@configurable
class FlowDecoder(Decoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        image_channels: int = 3,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_tokens: int = 256,
        token_dim: int = 6,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        vae_path: str | None = None,
        latent_scale: float | None = None,
        latent_shift: float | None = None,
        latent_cache: str | None = None,
        prediction: str = "velocity",
        min_sigma: float = 0.05,
        sigma_data: float = 0.5,
        objective: RectifiedFlow | None = None,
        sampler: EulerSampler | None = None,
    ) -> None:
        """`image_size`: the side of square images, or (height, width). `vae_path`: a local diffusers
        AutoencoderKL directory (None: pixel space). `latent_scale` / `latent_shift` override the VAE config's
        scaling_factor / shift_factor. `latent_cache`: "memory" or a directory to keep the VAE latents of
        training images (see `vistok.decoders.latent_cache`). `objective`: the training objective (None:
        `RectifiedFlow()`); `sampler`: the sampler of `reconstruct`, whose `steps` are those of a decode that
        does not name them (None: `EulerSampler()`, 25 steps).
        `prediction`: what the network's head outputs, "velocity" (FlexTok, SD3) or "sample", the clean x0
        (JiT); either way `forward` returns the velocity, so the objective and the sampler do not change.
        `min_sigma`: the floor of sigma in the x0 -> velocity conversion (JiT's 0.05). "preconditioned": EDM's
        input/skip/output scaling for this path, with `sigma_data` the data's standard deviation (0.5 for
        pixels in [-1, 1], about 1 for scaled VAE latents)."""
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction, self.min_sigma, self.sigma_data = prediction, float(min_sigma), float(sigma_data)
        if latent_cache is not None and vae_path is None:
            raise ValueError("latent_cache needs a vae_path: a pixel-space flow decoder has no latents to cache")
        self.vae = None if vae_path is None else FrozenVAE(vae_path, latent_scale, latent_shift, latent_cache)
        factor = 1 if self.vae is None else self.vae.downsample
        self.channels = image_channels if self.vae is None else self.vae.channels
        h, w = image_hw(image_size)
        if h % patch_size or w % patch_size or patch_size % factor:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}, itself a "
                             f"multiple of the VAE's downsampling {factor}")
        self.output_spec = InputSpec(image_channels, h, w, "1")
        self.image_size = h if h == w else (h, w)
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.patch = patch_size // factor  # patch side in the network's space (pixels or latents)
        self.grid = (h // patch_size, w // patch_size)  # (rows, columns) of patches
        self.num_patches = self.grid[0] * self.grid[1]
        scale = width**-0.5
        self.patch_embed = PatchEmbed2D(self.patch, self.channels, width)
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
        self.time_embed = TimestepEmbedding(width)
        self.token_fill = TokenFill(num_tokens, token_dim, width, "mask")  # dropped / missing tokens
        self.null_token = nn.Parameter(scale * torch.randn(1, 1, width))  # the CFG null condition
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, cond_dim=width)
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out_proj = nn.Linear(width, self.patch * self.patch * self.channels)
        for layer in (self.out_modulation[-1], self.out_proj):  # DiT: the network starts by predicting 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.objective = RectifiedFlow() if objective is None else objective
        self.sampler = EulerSampler() if sampler is None else sampler
        # The training draws (noise, sigma, condition dropout); None: torch's global RNG. A trainer may set a
        # generator (on this module's device) and checkpoint its state for an exact resume.
        self.generator: torch.Generator | None = None

    generative = True
    sampler_arguments = ("steps", "guidance_scale", "seed")

    @property
    def default_steps(self) -> int:
        """The sampler's default number of steps."""
        return self.sampler.steps

    legacy_state_keys = legacy_keys("mask_token")

    @staticmethod
    def upgrade_init_args(args: dict) -> dict:
        """Map the flat objective/sampler arguments of an older export onto `objective` / `sampler` configs."""
        moved: dict[str, dict] = {"objective": {}, "sampler": {}}
        for old, (owner, new) in _LEGACY_ARGS.items():
            if old in args and args.get(owner) is None:
                moved[owner][new] = args.pop(old)
        for owner, cls in (("objective", RectifiedFlow), ("sampler", EulerSampler)):
            if moved[owner]:
                args[owner] = {"class_path": class_path(cls), "init_args": moved[owner]}
        return args

    # --- the velocity network ------------------------------------------------------------------------------
    def condition(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool or None -> context (B, N, D)."""
        return self.token_fill(codes, valid)[0]  # (B, N, D)

    def null_condition(self, batch: int) -> torch.Tensor:
        """The learned null condition (B, N, D)."""
        return (self.null_token + self.token_fill.pos).expand(batch, -1, -1)

    def forward(self, x_t: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x_t (B, C, h, w) noised input, sigma (B,), context (B, N, D) -> velocity (B, C, h, w)."""
        if self.prediction == "preconditioned":
            # EDM (Karras et al. 2022) on x_t = (1 - sigma) x0 + sigma n: var(x_t) = (1-sigma)^2 sd^2 + sigma^2,
            # x0_hat = c_skip x_t + c_out F(c_in x_t) with c_skip = (1-sigma) sd^2 / var, c_out = sigma sd / std.
            # The implied velocity (x_t - x0_hat) / sigma is finite at every sigma, 0 included:
            #   v = (sigma - (1-sigma) sd^2) / var * x_t - sd / std * F.
            s, sd = sigma.float().reshape(-1, 1, 1, 1), self.sigma_data
            var = (1 - s) ** 2 * sd**2 + s**2
            f = self._network((x_t.float() * var.rsqrt()).to(x_t.dtype), sigma, context).float()
            return ((s - (1 - s) * sd**2) / var * x_t.float() - sd * var.rsqrt() * f).to(x_t.dtype)
        out = self._network(x_t, sigma, context)
        if self.prediction == "velocity":
            return out
        # x0 prediction: x_t = sigma * noise + (1 - sigma) * x0  =>  noise - x0 = (x_t - x0) / sigma
        s = sigma.float().clamp_min(self.min_sigma).reshape(-1, 1, 1, 1)
        return ((x_t.float() - out.float()) / s).to(out.dtype)

    def _network(self, x_t: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The raw transformer: (B, C, h, w), (B,), (B, N, D) -> its head's output (B, C, h, w)."""
        patches = self.patch_embed(x_t) + self.patch_pos  # (B, L, D)
        cond = self.time_embed(sigma)  # (B, D)
        h = self.transformer(torch.cat([patches, context.to(patches.dtype)], dim=1), cond=cond)
        shift, scale = self.out_modulation(cond)[:, None].chunk(2, dim=-1)  # (B, 1, D) each
        h = self.norm_out(h[:, : self.num_patches]) * (1 + scale) + shift
        return unpatchify(self.out_proj(h), self.patch, self.grid, self.channels)

    # --- the two decoder entry points ----------------------------------------------------------------------
    def to_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> the flow's space: themselves, or scaled VAE latents."""
        return images if self.vae is None else self.vae.encode(images)

    def training_loss(self, codes: torch.Tensor, valid: torch.Tensor | None,
                      images: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The rectified-flow loss for a batch; no reconstruction (that needs the sampler)."""
        context = self.condition(codes, valid)
        loss = self.objective.loss(self, self.to_space(images), context, self.null_condition(codes.shape[0]),
                                   self.generator)
        return loss, None

    def reconstruct(self, codes: torch.Tensor, valid: torch.Tensor | None = None, steps: int | None = None,
                    guidance_scale: float = 1.0, seed: int = 0) -> torch.Tensor:
        """Sample images (B, 3, H, W) (unclamped) for codes (B, K, d); fixed `seed` -> identical output.
        `steps` defaults to the sampler's (25)."""
        context = self.condition(codes, valid)
        null = None if float(guidance_scale) == 1.0 else self.null_condition(codes.shape[0])
        shape = (self.channels, self.grid[0] * self.patch, self.grid[1] * self.patch)
        x = self.sampler.sample(self, shape, context, null, steps, guidance_scale, seed)
        return x if self.vae is None else self.vae.decode(x)
