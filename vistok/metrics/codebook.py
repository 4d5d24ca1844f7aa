"""Codebook statistics over an evaluation set: share of codes used, perplexity, dead codes.

Perplexity is exp(entropy) of the empirical code distribution over all token positions (VQGAN / TiTok
convention): V when every code is equally frequent, 1 when one code is used. Counts stream (one int64 per
code), so memory does not grow with the dataset.
"""

from __future__ import annotations

import torch


class CodebookStats:
    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.int64)

    def update(self, indices: torch.Tensor) -> None:
        """indices: int64 (B, K) token ids in 0..V-1."""
        flat = indices.detach().reshape(-1).to("cpu", torch.int64)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(f"token ids must be in 0..{self.codebook_size - 1}, got "
                             f"{int(flat.min())}..{int(flat.max())}")
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    def compute(self) -> dict[str, float | int]:
        total = int(self.counts.sum())
        used = int((self.counts > 0).sum())
        p = self.counts[self.counts > 0].double() / max(total, 1)
        entropy = float(-(p * p.log()).sum()) if total else 0.0
        return {
            "codebook_usage": used / self.codebook_size,
            "codes_used": used,
            "dead_codes": self.codebook_size - used,
            "perplexity": float(torch.tensor(entropy).exp()),
        }
