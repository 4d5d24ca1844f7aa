"""A BatchNorm whose training statistics cover the global batch across processes (the semantics of PyTorch's
`SyncBatchNorm`, Ioffe & Szegedy 2015 over all ranks), for the CPU too: `SyncBatchNorm` runs on GPUs only.

Used by FSQ's input norm (`vistok.quantizers.fsq`) and the PatchGAN discriminator's BatchNorm
(`vistok.nn.discriminator`, `GlobalBatchNorm2d`). With `sync` off, or in a single process, it is exactly
`nn.BatchNorm1d`; with it on and a process group of several ranks, each training forward all-reduces the
per-channel sum, sum of squares and count (one autograd-aware collective, so the backward pass sums the
statistics' gradients over ranks as well) and every rank updates the same running statistics. Without it,
under DDP each rank normalised by its own per-process batch and kept its own running statistics, which DDP
then overwrote with rank 0's before every forward: the global batch was not what the normalisation saw.
Same parameters and buffers as `nn.BatchNorm1d`: checkpoints load either way.

Shapes: (B, C) or (B, C, L), statistics per channel C over the other dimensions (`GlobalBatchNorm2d`,
`GlobalBatchNorm3d`: image and clip feature maps).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _GlobalStatistics:
    """The forward of the classes below: the parent BatchNorm's in one process, the global batch's otherwise."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.sync = False  # switched on by the training system once the process group exists

    def set_distributed(self, enabled: bool) -> bool:
        self.sync = bool(enabled)
        return self.sync

    def _world(self) -> int:
        if not (self.sync and self.training and dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._world() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = xf.new_tensor([x.numel() / x.shape[1]])
        stats = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))  # (2C + 1,) summed over ranks
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        return y.to(x.dtype)


class GlobalBatchNorm1d(_GlobalStatistics, nn.BatchNorm1d):
    """(B, C) or (B, C, L): FSQ's input norm."""


class GlobalBatchNorm2d(_GlobalStatistics, nn.BatchNorm2d):
    """(B, C, H, W): the same for image feature maps (a discriminator's BatchNorm)."""


class GlobalBatchNorm3d(_GlobalStatistics, nn.BatchNorm3d):
    """(B, C, T, H, W): the same for clip feature maps (the 3-D video discriminator's BatchNorm)."""
