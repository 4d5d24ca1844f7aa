"""Codebook statistics: share of codes used, perplexity, dead codes. The one place they are computed: for an
evaluation set (`CodebookStats`), per training batch (`vistok.quantizers.base.usage_metrics`) and per
validation epoch (the `CodebookUsage` callback) alike, from a histogram of code counts.

Perplexity is exp(entropy) of the empirical code distribution over all token positions (VQGAN / TiTok
convention): V when every code is equally frequent, 1 when one code is used. Counts stream (one int64 per
code), so memory does not grow with the dataset.
"""

from __future__ import annotations

import torch


def code_counts(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(V,) int64 histogram of token ids (any shape, values in 0..V-1), on the ids' device."""
    return torch.bincount(indices.detach().reshape(-1).long(), minlength=codebook_size)


def usage_from_counts(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Share of codes used, number used and perplexity (0-d tensors on the counts' device) of a histogram."""
    dtype = torch.float32 if counts.device.type == "mps" else torch.float64  # mps has no float64
    p = counts.to(dtype) / counts.sum().clamp(min=1)
    entropy = -(p * p.clamp(min=1e-300).log()).sum()  # 0 * log(tiny) = 0 for unused codes
    used = (counts > 0).sum()
    return {"usage": used.to(dtype) / counts.numel(), "codes_used": used, "perplexity": entropy.exp()}


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
        self.counts += code_counts(flat, self.codebook_size)

    def compute(self) -> dict[str, float | int]:
        stats = usage_from_counts(self.counts)
        used = int(stats["codes_used"])
        return {
            "codebook_usage": float(stats["usage"]),
            "codes_used": used,
            "dead_codes": self.codebook_size - used,
            "perplexity": float(stats["perplexity"]),
        }
