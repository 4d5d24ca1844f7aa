"""LARP's vector quantizer as its authors built it (Wang et al. 2024, "LARP: Tokenizing Videos with a Learned
Autoregressive Generative Prior"; its `SimpleVectorQuantizer`).

A learned codebook (V x d, trained by gradient: the codebook loss), l2-normalised like the input. Stochastic
(`stochastic=True`, LARP's setting): the code is *sampled* from softmax(cosine similarity / temperature), in
training and, in the official code, in evaluation too unless it is switched to deterministic; there the
argmax is taken. `deterministic_eval=True` is that switch (vistok's default, so that encoding is a function of
the input; imports of released checkpoints keep it on). Non-stochastic: the nearest code by Euclidean
distance. Loss: `commitment_weight * ||sg(code) - z||^2 + codebook_weight * ||code - sg(z)||^2` (means).

Parameter: `embedding` (V, d), as the official `embedding.weight`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput


@configurable
class StochasticVQQuantizer(Quantizer):
    def __init__(self, dim: int = 16, codebook_size: int = 8192, l2_normalized: bool = True,
                 stochastic: bool = True, temperature: float = 0.03, commitment_weight: float = 0.25,
                 codebook_weight: float = 1.0, deterministic_eval: bool = True) -> None:
        super().__init__()
        if stochastic and not l2_normalized:
            raise ValueError("stochastic sampling compares cosine similarities: it needs l2_normalized=True")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.dim, self._codebook_size = dim, codebook_size
        self.l2_normalized, self.stochastic, self.temperature = l2_normalized, stochastic, temperature
        self.commitment_weight, self.codebook_weight = commitment_weight, codebook_weight
        self.deterministic_eval = deterministic_eval
        self.embedding = nn.Parameter(torch.empty(codebook_size, dim))
        nn.init.kaiming_uniform_(self.embedding)

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def table(self) -> torch.Tensor:
        """(V, d) codes as the decoder and the prior see them (l2-normalised when `l2_normalized`)."""
        emb = self.embedding.float()
        return F.normalize(emb, dim=-1) if self.l2_normalized else emb

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        # z (B, N, d) fp32
        if self.l2_normalized:
            z = F.normalize(z, dim=-1)
        table = self.table()
        flat = z.reshape(-1, self.dim)
        if self.stochastic:
            probs = F.softmax(flat @ table.t() * (1 / self.temperature), dim=-1)  # as the official code
            if self.deterministic_eval and not self.training:
                indices = probs.argmax(dim=-1)
            else:
                indices = torch.multinomial(probs, 1).squeeze(-1)
        else:
            distances = flat.pow(2).sum(1, keepdim=True) + table.pow(2).sum(1) - 2 * flat @ table.t()
            indices = distances.argmin(dim=1)
        codes = F.embedding(indices, table).view_as(z)
        loss = (self.commitment_weight * (codes.detach() - z).pow(2).mean()
                + self.codebook_weight * (codes - z.detach()).pow(2).mean())
        codes = z + (codes - z).detach()
        return QuantizerOutput(codes, indices.view(z.shape[:-1]), loss, self.codebook_size)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices.long(), self.table())
