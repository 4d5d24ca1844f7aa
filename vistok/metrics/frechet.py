"""Frechet distance between two Gaussians fitted to network features, shared by FID and FVD.

d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))  (Dowson & Landau 1982; FID: Heusel et al. 2017;
FVD: Unterthiner et al. 2018). Everything runs in float64. With S1 = L L^T, S1 S2 is similar to the symmetric
positive semi-definite L^T S2 L, so tr (S1 S2)^(1/2) = sum(sqrt(eigvalsh(L^T S2 L))), round-off negatives
clamped to 0. L is the Cholesky factor when S1 is full rank (cheap), else the symmetric square root from `eigh`
(fewer samples than dimensions). This equals the usual `scipy.linalg.sqrtm` route (pytorch-fid) without its
complex-valued detour.

`GaussianStats` accumulates the sufficient statistics (count, sum, sum of outer products) in float64, so a
dataset streams through in batches with constant memory, and statistics of disjoint parts (batches, data
shards, processes) combine by adding them: `merge` in one process, `all_reduce` across a process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); means (D,), covariances (D, D)."""
    mu1, mu2, sigma1, sigma2 = (t.detach().to("cpu", torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"sigma {tuple(sigma1.shape)} / {tuple(sigma2.shape)}")
    factor, info = torch.linalg.cholesky_ex(sigma1)  # S1 = L L^T when S1 is full rank (cheap)
    if int(info) != 0:  # rank-deficient (fewer samples than dimensions): the symmetric square root
        factor = _psd_sqrt(sigma1)
    middle = factor.T @ sigma2 @ factor  # similar to S1 S2, symmetric PSD
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


class GaussianStats:
    """Streaming mean and (unbiased) covariance of feature vectors, in float64 on the CPU."""

    def __init__(self, dim: int) -> None:
        self.dim, self.count = dim, 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        f = features.detach().to("cpu", torch.float64).reshape(features.shape[0], -1)  # (B, D)
        if f.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d features, got {f.shape[1]}")
        self.count += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Add the statistics of `other` (features of a disjoint set) to these, in place; returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d ones")
        self.count += other.count
        self.sum += other.sum
        self.outer += other.outer
        return self

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> GaussianStats:
        """Sum the statistics of every process of `group` into each process's copy (in place; returns self).
        Without an initialised process group it does nothing."""
        if not (dist.is_available() and dist.is_initialized()):
            return self
        nccl = dist.get_backend(group) == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        flat = torch.cat([torch.tensor([float(self.count)], dtype=torch.float64), self.sum, self.outer.flatten()])
        flat = flat.to(device)
        dist.all_reduce(flat, group=group)  # SUM; counts stay exact below 2**53
        flat = flat.cpu()
        self.count = int(flat[0])
        self.sum = flat[1 : 1 + self.dim].clone()
        self.outer = flat[1 + self.dim :].reshape(self.dim, self.dim).clone()
        return self

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got {self.count}")
        mu = self.sum / self.count
        cov = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return mu, cov

    def distance(self, other: GaussianStats) -> float:
        return frechet_distance(*self.mean_cov(), *other.mean_cov())
