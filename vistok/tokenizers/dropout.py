"""Token dropout for flexible-length tokenizers (training only; identity in eval).

- `NestedDropout` (FlexTok, Bachmann et al. 2025, after Rippel et al. 2014): each sample keeps its first K
  tokens, K drawn per sample; the rest are marked invalid and the decoder replaces them by a learned mask
  token. Distributions: `uniform` (1..N), `pow2` ({1, 2, 4, ..., N}), `uniform_pow2` (FlexTok's released
  rule: K uniform in 1..N, rounded up to the next power of two, so K = N half of the time when N is a power of
  two), `bucket_uniform` (a power-of-two bucket uniformly, then K uniformly inside it: as many draws land in
  1..1 as in N/2+1..N; what vistok called `uniform_pow2` before it matched FlexTok). `full_prob` adds an extra
  chance of K = N (our CPU calibration: full-length quality otherwise lags).
- `TailDrop` (One-D-Piece, Miwa et al. 2025): one K per batch, uniform in 1..N (N included); the tail is
  removed so the decoder sees K tokens. It runs after the quantizer, so the quantizer loss covers all N.

Both return `(codes, valid)`: codes (B, K', d) and valid (B, K') bool or None (all valid).

Lengths are drawn on the CPU from `self.generator` (a CPU `torch.Generator`; None: torch's global RNG). A
trainer that sets it and checkpoints its state gets the same lengths after a resume as without one.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.tokenizers.prefixes import pow2_lengths  # its home is prefixes.py; still importable from here

DISTRIBUTIONS = ("uniform", "pow2", "uniform_pow2", "bucket_uniform")


def sample_lengths(
    batch: int, num_tokens: int, distribution: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B,) int64 lengths in 1..N drawn from `distribution`."""
    if distribution == "uniform":
        return torch.randint(1, num_tokens + 1, (batch,), generator=generator)
    if distribution == "uniform_pow2":  # the next power of two >= a uniform K, capped at N
        k = torch.randint(1, num_tokens + 1, (batch,), generator=generator)
        return (2 ** torch.ceil(torch.log2(k.double()))).long().clamp(max=num_tokens)
    levels = torch.tensor(pow2_lengths(num_tokens))
    bucket = torch.randint(0, len(levels), (batch,), generator=generator)
    if distribution == "pow2":
        return levels[bucket]
    if distribution == "bucket_uniform":
        lower = torch.cat([torch.zeros(1, dtype=levels.dtype), levels[:-1]])[bucket]  # exclusive
        width = levels[bucket] - lower
        return lower + 1 + (torch.rand(batch, generator=generator) * width).long().clamp(max=width - 1)
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


@configurable
class NestedDropout(nn.Module):
    def __init__(self, num_tokens: int, distribution: str = "pow2", full_prob: float = 0.0) -> None:
        super().__init__()
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        self.num_tokens, self.distribution, self.full_prob = num_tokens, distribution, full_prob
        self.enabled = True  # switched off during a warm-up phase
        self.generator: torch.Generator | None = None  # CPU generator for the training draws

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = sample_lengths(batch, self.num_tokens, self.distribution, generator)
        if self.full_prob > 0:
            k = torch.where(torch.rand(batch, generator=generator) < self.full_prob, self.num_tokens, k)
        return k

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not (self.training and self.enabled):
            return codes, None
        k = self.sample(codes.shape[0], self.generator).to(codes.device)  # (B,)
        valid = torch.arange(codes.shape[1], device=codes.device)[None] < k[:, None]  # (B, N)
        return codes, valid


@configurable
class TailDrop(nn.Module):
    def __init__(self, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.enabled = True
        self.generator: torch.Generator | None = None  # CPU generator for the training draws

    def sample(self, generator: torch.Generator | None = None) -> int:
        return int(torch.randint(1, self.num_tokens + 1, (1,), generator=generator))

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not (self.training and self.enabled):
            return codes, None
        return codes[:, : self.sample(self.generator)], None  # (B, K, d)
