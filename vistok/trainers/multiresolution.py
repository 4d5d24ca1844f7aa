"""Multi-resolution training, OmniTokenizer's stages 2 and 3 ("OmniTokenizer: A Joint Image-Video Tokenizer for
Visual Generation", Wang et al. 2024; the official `--resolution_scale 0.5 0.75 1.0 1.25`).

Each training batch is resized to one scale drawn at random from the list: images (B, C, H, W), or clips
(B, C, T, H, W) frame by frame, bilinear with align_corners=True, to int(H * s) x int(W * s). The tokenizer
then encodes and decodes that size, and every loss (pixel, perceptual, adversarial, the discriminator's own)
compares against the resized batch. Validation is never resized. What lets one network take several grids is
2-D RoPE (`spatial_pos: rope` of the official OmniTokenizer network, computed for the grid at hand); which sizes
a tokenizer takes is its `size_refusal`, asked for every scale before any work.

Departures: the official draws with python's `random` in each process; here the draw comes from a `generator`
that `vistok.trainers.rng.TrainingRNG` seeds per rank (so ranks draw different scales, as the official) and
keeps in every checkpoint, so a resumed run draws the scales an uninterrupted one would. The official resizes to
a square int(H * s); for a non-square model this scales each side. A batch at scale 1 is passed on as it is
(the official interpolates it to its own size, which is the identity up to rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The frame size of a scale: int(H * s) x int(W * s), as the official rounds."""
    return int(height * scale), int(width * scale)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images (B, C, H, W) or clips (B, C, T, H, W, each frame on its own) -> the same at `size`, bilinear with
    align_corners=True (the official's resize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.ndim == 4:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    frames = F.interpolate(rearrange(x, "b c t h w -> (b t) c h w"), size=size, mode="bilinear", align_corners=True)
    return rearrange(frames, "(b t) c h w -> b c t h w", b=x.shape[0])


class MultiResolution(nn.Module):
    """The scales and their draw. A module with no parameters, so that `TrainingRNG` gives it a `generator`
    (CPU) whose state every checkpoint keeps; None (before a fit seeds it) draws from torch's global RNG."""

    def __init__(self, scales: Sequence[float], tokenizer: nn.Module,
                 discriminators: Sequence[nn.Module | None] = (), proxy_codes: bool = False) -> None:
        super().__init__()
        self.scales = check_scales(scales, tokenizer, discriminators, proxy_codes)
        self.generator: torch.Generator | None = None

    def draw(self) -> float:
        i = int(torch.randint(len(self.scales), (1,), generator=self.generator))
        return self.scales[i]

    def rescale(self, batch: dict[str, Any]) -> float:
        """Resize the batch's pixels ("video", else "image") to a drawn scale, in place: everything that reads
        the batch after this (the generator's losses, the discriminator's step) sees the resized pixels.
        Returns the scale."""
        key = "video" if "video" in batch else "image"
        x = batch[key]
        scale = self.draw()
        batch[key] = resize(x, scaled_size(x.shape[-2], x.shape[-1], scale))
        return scale


def check_scales(scales: Sequence[float], tokenizer: nn.Module, discriminators: Sequence[nn.Module | None] = (),
                 proxy_codes: bool = False) -> list[float]:
    """The scales as floats; refused before any work, naming `resolution_scales` and the size, when the model
    cannot train at one of them."""
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"resolution_scales must be a non-empty list of numbers, got {scales!r}")
    values = []
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0:
            raise ValueError(f"resolution_scales must be positive numbers, got {list(scales)!r}")
        values.append(float(s))
    if proxy_codes:
        raise ValueError("resolution_scales: proxy_codes (TiTok stage 1) trains against a frozen network's codes "
                         "at the model's own size; it takes no other size")
    spec = getattr(tokenizer, "input_spec", None)
    refusal = getattr(tokenizer, "size_refusal", None)
    if spec is None:
        raise ValueError(f"resolution_scales: {type(tokenizer).__name__} states no input_spec (no frame size to "
                         "scale)")
    for s in values:
        h, w = scaled_size(spec.height, spec.width, s)
        why = (refusal(h, w) if refusal is not None else None if (h, w) == spec.size else
               f"{type(tokenizer).__name__} takes {spec.height} x {spec.width} frames only")
        if why is None:
            why = _discriminator_refusal(discriminators, h, w)
        if why:
            raise ValueError(f"resolution_scales: scale {s:g} of {spec.height} x {spec.width} gives {h} x {w} "
                             f"frames, which this model cannot train on: {why}")
    return values


def _discriminator_refusal(discriminators: Sequence[nn.Module | None], h: int, w: int) -> str | None:
    """A patch-embedding discriminator (LARP's transformer) takes square frames of whole patches; convolutional
    ones (`too_small`) take any size large enough for their layers."""
    for d in discriminators:
        patch = getattr(d, "patch_size", None)
        if d is not None and isinstance(patch, int) and (h != w or h % patch):
            return f"{type(d).__name__} takes square frames of whole {patch} x {patch} patches"
        too_small = getattr(d, "too_small", None)
        why = too_small(h, w) if callable(too_small) else None
        if why:
            return why
    return None
