"""Precomputed reference statistics for rFID / rFVD: an .npz with `mu` (D,) and `sigma` (D, D) of a dataset's
Inception (D = 2048) or I3D (D = 400) features, e.g. the ImageNet-validation statistics published with a paper,
so that a score compares with numbers measured against the same statistics rather than against the evaluated
originals. The file's sha256 is recorded with every score that used it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vistok.metrics.frechet import GaussianStats, frechet_distance


@dataclass
class ReferenceStats:
    path: Path
    mu: torch.Tensor  # (D,) float64
    sigma: torch.Tensor  # (D, D) float64
    sha256: str

    def distance(self, stats: GaussianStats | None, network: str) -> float:
        """Frechet distance between these statistics and `stats` (the reconstructions' features)."""
        if stats is None or stats.count < 2:
            raise ValueError(f"{network} distance to {self.path} needs at least 2 reconstructions")
        if stats.dim != self.mu.numel():
            raise ValueError(f"--reference-stats {self.path}: {self.mu.numel()}-d statistics, but the {network} "
                             f"features are {stats.dim}-d (Inception: 2048, I3D: 400)")
        return frechet_distance(self.mu, self.sigma, *stats.mean_cov())

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.sha256})"


def load_reference_stats(path: str | Path) -> ReferenceStats:
    """Read and check an .npz holding `mu` (D,) and `sigma` (D, D), finite; pickled objects are refused."""
    from vistok.weights.cache import sha256_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--reference-stats {path}: file not found (an .npz with mu (D,) and sigma (D, D))")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("mu", "sigma") if k not in f.files]
            if missing:
                raise ValueError(f"--reference-stats {path}: no {' or '.join(missing)} (keys: {f.files})")
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (OSError, ValueError) as e:
        if str(e).startswith("--reference-stats"):
            raise
        raise ValueError(f"--reference-stats {path}: not a readable .npz ({e})") from None
    d = mu.size
    if mu.ndim != 1 or sigma.shape != (d, d):
        raise ValueError(f"--reference-stats {path}: mu must be (D,) and sigma (D, D), got {mu.shape} and "
                         f"{sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"--reference-stats {path}: mu / sigma hold NaN or infinite values")
    return ReferenceStats(path, torch.from_numpy(mu), torch.from_numpy(sigma), sha256_file(path))
