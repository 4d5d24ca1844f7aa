"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023) via vector-quantize-pytorch's `LFQ`.

Each of log2(V) channels is quantized to its sign; an entropy loss spreads usage over the implicit codebook.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import LFQ

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput


@configurable
class LFQQuantizer(Quantizer):
    def __init__(
        self,
        dim: int = 12,
        codebook_size: int = 4096,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
    ) -> None:
        super().__init__()
        if 2 ** int(math.log2(codebook_size)) != codebook_size:
            raise ValueError(f"LFQ codebook_size must be a power of two, got {codebook_size}")
        self.dim = dim
        self._codebook_size = codebook_size
        self.lfq = LFQ(
            dim=dim,
            codebook_size=codebook_size,
            entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_loss_weight,
            diversity_gamma=diversity_gamma,
        )

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        codes, indices, loss = self.lfq(z)
        return QuantizerOutput(codes, indices, loss, self.codebook_size)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.lfq.indices_to_codes(indices)
