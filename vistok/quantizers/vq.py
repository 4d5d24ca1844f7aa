"""Vector quantization (VQ-VAE, van den Oord et al. 2017) via vector-quantize-pytorch's `VectorQuantize`.

Defaults follow TiTok: 4096 codes of dimension 12, l2-normalised (cosine similarity), commitment weight
0.25. Departure: the codebook is updated by EMA with dead-code replacement (lucidrains' default) rather than
TiTok's learned codebook, because it does not collapse on short runs. With DDP set `sync_codebook`
explicitly (True averages the EMA statistics across ranks).
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import VectorQuantize

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput, usage_metrics


@configurable
class VQQuantizer(Quantizer):
    def __init__(
        self,
        dim: int = 12,
        codebook_size: int = 4096,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = True,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 2.0,
        kmeans_init: bool = False,
        sync_codebook: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self._codebook_size = codebook_size
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            commitment_weight=commitment_weight,
            decay=decay,
            threshold_ema_dead_code=threshold_ema_dead_code,
            kmeans_init=kmeans_init,
            sync_codebook=sync_codebook,
        )

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        codes, indices, loss = self.vq(z)
        return QuantizerOutput(codes, indices, loss.sum(), usage_metrics(indices.long(), self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices)
