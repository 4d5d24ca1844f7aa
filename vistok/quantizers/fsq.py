"""Finite Scalar Quantization (Mentzer et al., 2023) via vector-quantize-pytorch's `FSQ`.

Departures, both from our CPU calibration (docs/benchmarks.md#early-calibration-on-the-cpu) and both
optional:
- `input_norm`: a non-affine BatchNorm on z before the bound. At initialisation the image-to-image spread of
  z is tiny; AdamW then pushes |z| into tanh's saturated range within a few steps and every image gets the
  same code. Normalising z keeps it inside the levels. Under several processes its statistics cover the
  global batch (`set_distributed`, called by the training system; `vistok.nn.global_batch_norm`).
- `rounding` can be switched off (a warm-up phase): z is bounded as usual but not rounded, so the encoder
  and decoder first learn a continuous bottleneck. Indices are still reported.

FlexTok's regularisers (Bachmann et al. 2025, released FSQ module), training only and off by default:
- `drop_quant_p`: each sample skips the rounding with this probability (its codes are the bounded values);
- `corrupt_tokens_p`: with probability `apply_corrupt_tokens_p` per batch, a fraction drawn uniformly in
  [`min_corrupt_tokens_p`, `corrupt_tokens_p`] of the positions get the code of a random index.
With `input_norm` off and `dim` = len(levels) the quantizer has no parameters, as FlexTok's: its codes and
indices equal the released FSQ's (same bound, rounding and index basis).
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import FSQ

from vistok.configurable import configurable
from vistok.nn.global_batch_norm import GlobalBatchNorm1d
from vistok.quantizers.base import Quantizer, QuantizerOutput


@configurable
class FSQQuantizer(Quantizer):
    def __init__(self, levels: list[int] = (8, 5, 5, 5), dim: int | None = None, input_norm: bool = False,
                 drop_quant_p: float = 0.0, corrupt_tokens_p: float = 0.0, min_corrupt_tokens_p: float | None = None,
                 apply_corrupt_tokens_p: float = 0.2):
        super().__init__()
        for name, p in (("drop_quant_p", drop_quant_p), ("corrupt_tokens_p", corrupt_tokens_p),
                        ("apply_corrupt_tokens_p", apply_corrupt_tokens_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.drop_quant_p, self.corrupt_tokens_p = float(drop_quant_p), float(corrupt_tokens_p)
        self.min_corrupt_tokens_p = float(corrupt_tokens_p if min_corrupt_tokens_p is None else min_corrupt_tokens_p)
        self.apply_corrupt_tokens_p = float(apply_corrupt_tokens_p)
        levels = list(levels)
        self.levels = levels
        self.dim = dim or len(levels)
        self.fsq = FSQ(levels=levels, dim=self.dim)
        self.norm = GlobalBatchNorm1d(self.dim, affine=False) if input_norm else None
        self.rounding = True

    @property
    def codebook_size(self) -> int:
        return int(self.fsq.codebook_size)

    def set_distributed(self, enabled: bool) -> bool:
        """Normalise z with the global batch's statistics across processes (the input norm, if any); FSQ itself
        has no learned state. Returns whether a collective is now on."""
        if self.norm is None:
            return False
        self.norm.sync = bool(enabled)
        return self.norm.sync

    def _bound_without_rounding(self, z: torch.Tensor) -> torch.Tensor:
        # Same map as FSQ.bound, minus the final round: the value lies in the same [-1, 1] range.
        levels = self.fsq._levels.float()
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.fsq._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return (torch.tanh(z + shift) * half_l - offset) / (self.fsq._levels // 2)

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        if self.norm is not None:
            z = self.norm(z.transpose(1, 2)).transpose(1, 2)  # normalise each channel over (B, N)
        codes, indices = self.fsq(z)
        if not self.rounding:
            codes = self.fsq.project_out(self._bound_without_rounding(self.fsq.project_in(z)))
        elif self.training and self.drop_quant_p > 0:  # FlexTok: some samples pass unrounded
            skip = torch.rand(z.shape[0], device=z.device) < self.drop_quant_p  # (B,)
            unrounded = self.fsq.project_out(self._bound_without_rounding(self.fsq.project_in(z)))
            codes = codes + (skip[:, None, None] * (unrounded - codes)).detach()  # straight-through either way
        if self.training and self.corrupt_tokens_p > 0 and float(torch.rand(())) < self.apply_corrupt_tokens_p:
            lo, hi = self.min_corrupt_tokens_p, self.corrupt_tokens_p
            frac = lo + float(torch.rand(())) * (hi - lo)
            hit = torch.rand(codes.shape[:-1], device=codes.device) < frac  # (B, N)
            ids = torch.randint(0, self.codebook_size, codes.shape[:-1], device=codes.device)
            random = self.indices_to_codes(ids)
            codes = torch.where(hit[..., None], random.to(codes.dtype), codes)
        return QuantizerOutput(codes, indices, z.new_zeros(()), self.codebook_size)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices)
