"""Vector quantization (VQ-VAE, van den Oord et al. 2017) via vector-quantize-pytorch's `VectorQuantize`.

Defaults follow TiTok: 4096 codes of dimension 12, l2-normalised (cosine similarity), commitment weight
0.25. Departure: the codebook is updated by EMA with dead-code replacement (lucidrains' default) rather than
TiTok's learned codebook, because it does not collapse on short runs.

Multi-process training: vector-quantize-pytorch decides at construction whether its EMA codebook statistics
(code counts, summed vectors) and dead-code replacement samples are all-reduced across processes, and a
tokenizer is built before the process group exists. `set_distributed(True)` switches that all-reduce on once it
does (the training system calls it in `setup`), so every rank updates the same codebook from the whole global
batch. `sync_codebook`: None or True sync under DDP; False never does (each rank's codebook then drifts from
rank 0's, which DDP re-broadcasts before every forward: the other ranks' codebook updates are lost).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from vector_quantize_pytorch import VectorQuantize
from vector_quantize_pytorch.vector_quantize_pytorch import batched_sample_vectors, noop, sample_vectors_distributed

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput


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
        sync_codebook: bool | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self._codebook_size = codebook_size
        self.sync_codebook = sync_codebook
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            commitment_weight=commitment_weight,
            decay=decay,
            threshold_ema_dead_code=threshold_ema_dead_code,
            kmeans_init=kmeans_init,
            sync_codebook=False,  # switched on by set_distributed once the process group exists
        )

    def set_distributed(self, enabled: bool) -> bool:
        """All-reduce the codebook's EMA statistics and share dead-code replacements across processes (what
        vector-quantize-pytorch's `sync_codebook=True` sets at construction). Returns whether sync is on."""
        on = bool(enabled) and self.sync_codebook is not False and dist.is_available() and dist.is_initialized()
        cb = self.vq._codebook
        cb.use_ddp = on
        cb.all_reduce_fn = dist.all_reduce if on else noop
        cb.kmeans_all_reduce_fn = dist.all_reduce if on else noop  # sync_kmeans is the library's default (True)
        cb.sample_fn = cb.replace_sample_fn = sample_vectors_distributed if on else batched_sample_vectors
        return on

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        codes, indices, loss = self.vq(z)
        return QuantizerOutput(codes, indices, loss.sum(), self.codebook_size)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices)
