"""OmniTokenizer's codebook as its authors built it (the VQ-VAE EMA codebook of VideoGPT, Yan et al. 2021, used by
OmniTokenizer, Wang et al. 2024).

The input vector is l2-normalised (`l2_input`, the official `--l2_code`), then matched to the nearest code by
Euclidean distance; the codes themselves are *not* normalised: they are EMA averages (decay 0.99) of the
normalised vectors assigned to them, divided by Laplace-smoothed counts. The first training batch initialises
the table (its vectors tiled with a little noise when the batch has fewer than V, then V drawn at random).
Commitment loss 0.25 * ||z - code||^2 (the official constant, whatever `--commitment_weight` says); the decoder
gets the code through a straight-through estimator. Random restarts of unused codes are off (the official
recipe's `--no_random_restart`). Under torch.distributed the counts and sums are all-reduced and rank 0's
initial table is broadcast, as in the official code.

Buffers: `embeddings` (V, d), `counts` (V), `sums` (V, d), `initialized` (a flag the official module keeps as a
Python attribute, so that a loaded model is never re-initialised here).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput


@configurable
class EMACodebookQuantizer(Quantizer):
    def __init__(self, dim: int = 8, codebook_size: int = 8192, l2_input: bool = True, decay: float = 0.99,
                 commitment_weight: float = 0.25, eps: float = 1e-7) -> None:
        super().__init__()
        self.dim, self._codebook_size = dim, codebook_size
        self.l2_input, self.decay, self.commitment_weight, self.eps = l2_input, decay, commitment_weight, eps
        self.register_buffer("embeddings", torch.randn(codebook_size, dim))
        self.register_buffer("counts", torch.zeros(codebook_size))
        self.register_buffer("sums", self.embeddings.clone())
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @torch.no_grad()
    def _tiled_sample(self, flat: torch.Tensor) -> torch.Tensor:
        n, d = flat.shape
        if n < self.codebook_size:
            flat = flat.repeat((self.codebook_size + n - 1) // n, 1)
            flat = flat + torch.randn_like(flat) * (0.01 / d**0.5)
        sample = flat[torch.randperm(flat.shape[0], device=flat.device)][: self.codebook_size]
        if self._distributed():
            dist.broadcast(sample, 0)
        return sample

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        onehot = F.one_hot(indices, self.codebook_size).type_as(flat)  # (n, V)
        count, total = onehot.sum(0), onehot.t() @ flat  # (V,), (V, d)
        if self._distributed():
            dist.all_reduce(count)
            dist.all_reduce(total)
        self.counts.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(total, alpha=1 - self.decay)
        n = self.counts.sum()
        smoothed = (self.counts + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embeddings.copy_(self.sums / smoothed[:, None])

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        # z (B, N, d) fp32
        if self.l2_input:
            z = F.normalize(z, dim=-1)
        flat = z.reshape(-1, self.dim)
        if self.training and not bool(self.initialized):
            sample = self._tiled_sample(flat.detach())
            self.embeddings.copy_(sample)
            self.sums.copy_(sample)
            self.counts.fill_(1.0)
            self.initialized.fill_(True)
        table = self.embeddings
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ table.t() + table.pow(2).sum(1)[None])
        indices = distances.argmin(1)
        codes = F.embedding(indices, table).view_as(z)
        loss = self.commitment_weight * F.mse_loss(z, codes.detach())
        if self.training:
            self._update(flat.detach(), indices)
        codes = z + (codes - z).detach()
        return QuantizerOutput(codes, indices.view(z.shape[:-1]), loss, self.codebook_size)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices.long(), self.embeddings).float()
