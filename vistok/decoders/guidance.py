"""Guidance rules that combine a conditional and an unconditional velocity (B, C, H, W).

- `cfg`: classifier-free guidance (Ho & Salimans 2022), `v_u + s * (v_c - v_u)`.
- `apg`: adaptive projected guidance ("Eliminating Oversaturation and Artifacts of High Guidance Scales in
  Diffusion Models", Sadat et al. 2024), as FlexTok's released sampler applies it: the difference `v_c - v_u`
  goes through a momentum buffer (beta = -0.5), is rescaled to an L2 norm of at most `norm_threshold` (2.5) per
  image, and only its component orthogonal to `v_c` (plus `eta` times the parallel one; eta = 0) is added,
  `v_c + (s - 1) * update`. The projection runs in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIMS = (-1, -2, -3)  # one image's (C, H, W)


def cfg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return v_uncond + scale * (v_cond - v_uncond)


class Momentum:
    """The running average of APG: avg <- update + beta * avg (starts at 0)."""

    def __init__(self, beta: float = -0.5) -> None:
        self.beta, self.average = beta, 0.0

    def __call__(self, update: torch.Tensor) -> torch.Tensor:
        self.average = update + self.beta * self.average
        return self.average


def apg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float, momentum: Momentum | None = None,
        eta: float = 0.0, norm_threshold: float = 2.5) -> torch.Tensor:
    diff = v_cond - v_uncond
    if momentum is not None:
        diff = momentum(diff)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=DIMS, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    unit = F.normalize(v_cond.double(), dim=DIMS)
    parallel = (diff.double() * unit).sum(dim=DIMS, keepdim=True) * unit
    orthogonal = diff.double() - parallel
    update = orthogonal.to(diff.dtype) + eta * parallel.to(diff.dtype)
    return v_cond + (scale - 1) * update
