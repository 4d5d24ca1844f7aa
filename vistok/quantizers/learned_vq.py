"""A learned VQ codebook trained by its loss, as TiTok / TA-TiTok / One-D-Piece train theirs (VQ-VAE, van den Oord
et al. 2017; l2-normalised codes as in ViT-VQGAN, Yu et al. 2022).

The nearest code is found by squared l2 distance, expanded as |z|^2 + |e|^2 - 2 z.e (the official order of
operations, so ids match theirs to the last tie). With `l2_norm`, z and the codebook are normalised first and
the codes returned are normalised codebook rows. Loss: `codebook` mean((sg[z] - e)^2) + `commitment_weight` *
mean((z - sg[e])^2) (0.25 in every released config), straight-through gradients to z.

`clustering=True` (TA-TiTok's "clustering VQ", training only): a running usage estimate per code (decay 0.99)
and, for each code, the encoder output nearest to it in the batch; rarely used codes are pulled toward that
vector (decay exp(-usage * V * 10 / (1 - 0.99) - 1e-3)). Under DDP (`set_distributed(True)`, called by the training
system) the usage counts are summed over processes and each code takes the nearest encoder output of the global
batch, as the official code does by gathering the batch first, so every process makes the same update and the
codebooks stay identical (a parameter, which DDP never re-broadcasts).

The EMA codebook (`vistok.quantizers.vq.VQQuantizer`) stays our default for training from scratch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput


def _distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(M, d), (V, d) -> (M, V) squared l2 distances."""
    return z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * torch.einsum("md,dv->mv", z, codebook.t())


@configurable
class LearnedVQQuantizer(Quantizer):
    def __init__(self, dim: int = 12, codebook_size: int = 4096, l2_norm: bool = True,
                 commitment_weight: float = 0.25, clustering: bool = False) -> None:
        super().__init__()
        self.dim, self._codebook_size = dim, codebook_size
        self.l2_norm, self.commitment_weight, self.clustering = l2_norm, commitment_weight, clustering
        self.embedding = nn.Embedding(codebook_size, dim)  # the released name
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        if clustering:
            self.register_buffer("embed_prob", torch.zeros(codebook_size))
        self._distributed = False

    def set_distributed(self, enabled: bool) -> bool:
        """Make the clustering update use the global batch (a no-op without clustering). Returns whether it does."""
        self._distributed = bool(enabled) and self.clustering and dist.is_available() and dist.is_initialized()
        return self._distributed

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def _table(self) -> torch.Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=-1) if self.l2_norm else w

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        # z (B, N, d) fp32 -> codes (B, N, d), indices (B, N)
        flat = z.reshape(-1, self.dim)  # (M, d)
        raw = flat
        if self.l2_norm:
            flat = F.normalize(flat, dim=-1)
        d = _distances(flat, self._table())
        idx = d.argmin(1)
        codes = self._table()[idx]  # (M, d)
        loss = (self.commitment_weight * (codes.detach() - flat).pow(2).mean()
                + (codes - flat.detach()).pow(2).mean())
        if self.clustering and self.training:
            self._cluster_update(idx, d, raw)
        codes = flat + (codes - flat).detach()
        return QuantizerOutput(codes.view_as(z), idx.view(z.shape[:-1]), loss, self.codebook_size)

    @torch.no_grad()
    def _cluster_update(self, idx: torch.Tensor, d: torch.Tensor, raw: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.codebook_size).float()
        best, arg = d.min(0)  # (V,): for each code, the closest encoder output of the batch
        nearest = raw[arg].float()  # (V, d)
        if self._distributed:  # the global batch: summed counts, the nearest vector over every process
            dist.all_reduce(counts)
            world = dist.get_world_size()
            bests = [torch.empty_like(best) for _ in range(world)]
            nears = [torch.empty_like(nearest) for _ in range(world)]
            dist.all_gather(bests, best.contiguous())
            dist.all_gather(nears, nearest.contiguous())
            rank = torch.stack(bests).argmin(0)  # (V,), ties: the lowest rank, the same choice everywhere
            nearest = torch.stack(nears)[rank, torch.arange(self.codebook_size, device=rank.device)]
        usage = counts / counts.sum().clamp_min(1)
        self.embed_prob.mul_(0.99).add_(usage, alpha=0.01)
        decay = torch.exp(-(self.embed_prob * self.codebook_size * 10) / (1 - 0.99) - 1e-3)[:, None]
        w = self.embedding.weight
        w.data.copy_(w.data * (1 - decay) + nearest * decay)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self._table()[indices.long()]  # (B, N, d)

