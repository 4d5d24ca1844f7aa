"""Rectified-flow objective and Euler sampler, separate from the velocity network (DiT style).

Rectified flow (Liu et al. 2022, "Flow straight and fast"), in the convention of SD3 (Esser et al. 2024) and
FlexTok (Bachmann et al. 2025): `x_t = sigma * noise + (1 - sigma) * x0`, the network predicts the velocity
`noise - x0`, sigma is drawn logit-normal in training (SD3; diffusers' `compute_density_for_timestep_sampling`),
and the token condition is replaced by the network's learned null condition with probability `cond_drop_prob`
so that classifier-free guidance works at inference.

Both objects are `@configurable` (a config or an export names them with `class_path`/`init_args`, e.g.
`FlowDecoder(objective=RectifiedFlow(logit_mean=1.0), sampler=EulerSampler(steps=25))`) and take the network
as a function `velocity(x_t (B, ...), sigma (B,), context) -> (B, ...)`.

`EulerSampler` departs from FlexTok: it uses plain CFG (`v_u + s * (v_c - v_u)`), not FlexTok's adaptive
projected guidance, and diffusers' sigma schedule; the starting noise is drawn once per call from `seed` and
shared by every image of the batch, so an image decodes identically alone or inside any batch (a server's
dynamic batching cannot change a result). `FlexTokEulerSampler` is FlexTok's released sampler (uniform t = i/T,
CFG or APG, per-image noise by default), used by `vistok.decoders.flextok_flow.FlexTokFlowDecoder`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vistok.configurable import configurable

Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against `like`."""
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


@configurable
class RectifiedFlow:
    """The training objective: noise an input, ask the network for `noise - x0`, mean squared error."""

    def __init__(self, cond_drop_prob: float = 0.1, logit_mean: float = 0.0, logit_std: float = 1.0) -> None:
        """`cond_drop_prob`: how often the token condition is replaced by the null condition (for CFG);
        `logit_mean` / `logit_std`: the logit-normal distribution of the training sigmas (SD3)."""
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
        self.cond_drop_prob, self.logit_mean, self.logit_std = cond_drop_prob, logit_mean, logit_std

    @staticmethod
    def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x_t = sigma * noise + (1 - sigma) * x0; sigma (B,)."""
        s = _expand(sigma, x0)
        return s * noise + (1 - s) * x0

    @staticmethod
    def target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The velocity d x_t / d sigma = noise - x0 (constant along the straight path)."""
        return noise - x0

    def sample_sigma(self, batch: int, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) sigmas in (0, 1), logit-normal (SD3)."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        return compute_density_for_timestep_sampling(
            "logit_normal", batch, logit_mean=self.logit_mean, logit_std=self.logit_std, device=device,
            generator=generator,
        )

    def loss(self, velocity: Velocity, x0: torch.Tensor, context: torch.Tensor,
             null_context: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x0 (B, ...) clean inputs; context / null_context (B, N, D). Returns the scalar fp32 loss.

        Every random draw (noise, sigma, condition dropout) comes from `generator` (None: torch's global
        RNG); they are drawn on the generator's device and moved to x0's."""
        b = x0.shape[0]
        device = x0.device if generator is None else generator.device
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype).to(x0.device)
        sigma = self.sample_sigma(b, device, generator).to(x0.device, x0.dtype)  # (B,)
        drop = torch.rand(b, generator=generator, device=device).to(x0.device) < self.cond_drop_prob  # (B,) null
        context = torch.where(drop[:, None, None], null_context.to(context.dtype), context)
        pred = velocity(self.interpolate(x0, noise, sigma), sigma, context)
        return F.mse_loss(pred.float(), self.target(x0, noise).float())


def guided_velocity(velocity: Velocity, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                    null_context: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance in ONE network call on a doubled batch: v_u + s * (v_c - v_u)."""
    v = velocity(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([context, null_context.to(context.dtype)]))
    v_cond, v_null = v.chunk(2)
    return v_null + guidance_scale * (v_cond - v_null)


@configurable
class EulerSampler:
    """Euler integration from sigma = 1 (noise) to 0 with diffusers' `FlowMatchEulerDiscreteScheduler`.

    `shift` is the scheduler's timestep shift (1.0: uniform sigmas; SD3 uses 3.0 at 1024 px); `steps` the
    number of Euler steps of a call that does not name them (validation, grids, `decode` defaults)."""

    def __init__(self, shift: float = 1.0, steps: int = 25) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        self.shift, self.steps = shift, steps

    @torch.no_grad()
    def sample(self, velocity: Velocity, shape: tuple[int, ...], context: torch.Tensor,
               null_context: torch.Tensor | None = None, steps: int | None = None, guidance_scale: float = 1.0,
               seed: int = 0) -> torch.Tensor:
        """shape: one sample's (C, h, w); context (B, N, D). Returns x0 estimates (B, C, h, w) in fp32.
        `steps`: None for this sampler's `steps`.

        With guidance_scale == 1 the null condition is not needed and the network runs once per step on B;
        otherwise it runs once per step on the doubled batch 2B (conditional + null)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        steps = self.steps if steps is None else steps
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        guided = float(guidance_scale) != 1.0
        if guided and null_context is None:
            raise ValueError("guidance_scale != 1 needs the null condition")
        b, device = context.shape[0], context.device
        generator = torch.Generator().manual_seed(int(seed))  # CPU generator: the same noise on any device
        x = torch.randn((1, *shape), generator=generator).expand(b, *shape).to(device).contiguous()
        scheduler = FlowMatchEulerDiscreteScheduler(shift=self.shift)
        scheduler.set_timesteps(steps, device=device)
        n_train = scheduler.config.num_train_timesteps
        for t in scheduler.timesteps:
            sigma = (t / n_train).expand(b).to(x.dtype)  # (B,)
            if guided:
                v = guided_velocity(velocity, x, sigma, context, null_context, guidance_scale)
            else:
                v = velocity(x, sigma, context)
            x = scheduler.step(v.float(), t, x, return_dict=False)[0]
        return x


NOISE_MODES = ("per_image", "shared")
GUIDANCE = ("cfg", "apg")


@configurable
class FlexTokEulerSampler:
    """FlexTok's released sampler: `steps` uniform Euler steps, t = i / steps for i = steps..1, x <- x - v / steps,
    with classifier-free guidance (`guidance="cfg"`) or adaptive projected guidance (`"apg"`,
    `vistok.decoders.guidance.apg`, one momentum buffer per image) when guidance_scale != 1.

    `noise`: "per_image" draws one starting noise per image in batch order from a generator seeded with `seed`
    (the released pipeline's draw: image j's noise depends on its place in the batch); "shared" draws one and
    gives it to every image (an image then decodes identically alone or inside any batch)."""

    def __init__(self, steps: int = 25, guidance: str = "cfg", noise: str = "per_image",
                 momentum: float = -0.5, norm_threshold: float = 2.5, eta: float = 0.0) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        self.steps, self.guidance, self.noise = steps, guidance, noise
        self.momentum, self.norm_threshold, self.eta = momentum, norm_threshold, eta

    def initial_noise(self, batch: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """(B, *shape) float32 on the CPU."""
        generator = torch.Generator().manual_seed(int(seed))
        if self.noise == "shared":
            return torch.randn((1, *shape), generator=generator).expand(batch, *shape).contiguous()
        return torch.cat([torch.randn((1, *shape), generator=generator) for _ in range(batch)])

    @torch.no_grad()
    def sample(self, velocity: Velocity, shape: tuple[int, ...], context: torch.Tensor,
               null_context: torch.Tensor | None = None, steps: int | None = None, guidance_scale: float = 1.0,
               seed: int = 0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """shape: one sample's (C, h, w); context (B, N, D); `noise`: the starting point (B, C, h, w) instead of
        a draw. Returns the final x (B, C, h, w) in fp32. Guided steps run the network once on the doubled
        batch (conditional + null)."""
        from vistok.decoders.guidance import Momentum, apg, cfg

        steps = self.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        guided = float(guidance_scale) != 1.0
        if guided and null_context is None:
            raise ValueError("guidance_scale != 1 needs the null condition")
        b, device = context.shape[0], context.device
        x = (self.initial_noise(b, shape, seed) if noise is None else noise.float()).to(device)
        buffers = Momentum(self.momentum) if guided and self.guidance == "apg" else None
        for i in range(steps, 0, -1):
            t = torch.full((b,), i / steps, device=device)
            if guided:
                v_c, v_u = velocity(torch.cat([x, x]), torch.cat([t, t]),
                                    torch.cat([context, null_context.to(context.dtype)])).float().chunk(2)
                v = (cfg(v_c, v_u, guidance_scale) if buffers is None else
                     apg(v_c, v_u, guidance_scale, buffers, self.eta, self.norm_threshold))
            else:
                v = velocity(x, t, context).float()
            x = x - (1.0 / steps) * v  # FlexTok's dt * v (the same rounding)
        return x
