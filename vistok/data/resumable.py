"""`ResumableSampler`: the training order and every item's random draws as a pure function of (seed, epoch),
so a resumed run reads the same images, with the same crops, from the batch where it stopped.

Each epoch is a permutation of the dataset drawn from `seed` and the epoch; the sampler yields
`(index, item_seed)` pairs and a map-style dataset that accepts them (`SamplePhotoCrops`, `ImageFolderDataset`)
draws its crop and flip from `random.Random(item_seed)` instead of torch's global RNG. Nothing depends on the
process, the worker or what ran before, so `skip(epoch, batches)` can drop the batches an interrupted run
already trained on without loading them.

It is a `DistributedSampler` (Lightning keeps it instead of wrapping it): under DDP each rank takes every
`num_replicas`-th item of the permutation (padded to equal length, as torch's sampler does), and the skip counts
the rank's own batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 62-bit seed for one item of one epoch (integer tuples hash the same in every process)."""
    return hash((seed, epoch, index)) % 2**62


class ResumableSampler(DistributedSampler):
    def __init__(self, length: int, seed: int = 0, batch_size: int = 1, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        """`length`: the dataset's length; `batch_size`: the loader's, to turn skipped batches into items."""
        distributed = dist.is_available() and dist.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else dist.get_world_size() if distributed else 1
        rank = rank if rank is not None else dist.get_rank() if distributed else 0
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.length, self.batch_size = length, batch_size
        self._skip: tuple[int, int] | None = None  # (epoch, items) to drop once, at the start of that epoch

    def skip(self, epoch: int, batches: int) -> None:
        """The next iteration of `epoch` starts after its first `batches` batches (of this rank)."""
        self._skip = (int(epoch), int(batches) * self.batch_size)

    def order(self, epoch: int) -> list[int]:
        """This rank's indices for `epoch`, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            indices = torch.randperm(self.length, generator=g).tolist()
        else:
            indices = list(range(self.length))
        pad = self.total_size - len(indices)  # DistributedSampler's padding: every rank gets num_samples
        indices += (indices * (pad // max(1, len(indices)) + 1))[:pad]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, 0
        if self._skip is not None and self._skip[0] == epoch:
            start = self._skip[1]
        self._skip = None
        for i in self.order(epoch)[start:]:
            yield i, item_seed(self.seed, epoch, i)
