"""`ImageDataModule`: one Lightning data module for the bundled photos, image folders and webdataset shards.

A source is "sample" (random-resized crops of scikit-image's bundled photos for training, native-resolution
patches of the held-out photos for validation), "sample-photos" (the held-out photos resized whole), a folder
of images, or webdataset URLs (brace patterns allowed, e.g. "/data/train-{000000..000999}.tar"). Sources are
checked when the module is built, so a wrong path fails before any training starts.

Map-style training sources (the sample photos, folders) are read through a `ResumableSampler`: the order and
every crop are a function of (`seed`, epoch), and the module's `state_dict` (saved in every checkpoint) records
the epoch and the batches consumed, so a resumed run continues with the next batch the interrupted one would
have read. Webdataset sources are iterable: a resumed run restarts their stream (not exact). Under several
processes each rank reads its own shards, and its training stream repeats them without end (stop by
`trainer.max_steps`): streams of unequal length would end the epoch on one rank while DDP waits on the others.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vistok.data.folder import (
    ImageFolderDataset,
    check_webdataset_readable,
    collate_images,
    is_webdataset,
    webdataset_images,
)
from vistok.data.images import MAX_PIXELS
from vistok.data.resumable import ResumableSampler
from vistok.data.sample import SamplePhotoCrops
from vistok.devices import is_multiprocess

SAMPLE_SOURCES = ("sample", "sample-photos")


def build_dataset(source: str, size: int, train: bool, strict: bool = False, length: int = 10_000,
                  seed: int = 0, max_pixels: int | None = MAX_PIXELS):
    if source in SAMPLE_SOURCES:
        split = "train" if train else "photos" if source == "sample-photos" else "val"
        return SamplePhotoCrops(split, size, length, seed)
    if is_webdataset(source):
        return webdataset_images(source, size, train=train, strict=strict, max_pixels=max_pixels)
    if Path(source).is_dir():
        return ImageFolderDataset(source, size, train=train, strict=strict, max_pixels=max_pixels)
    raise FileNotFoundError(f"data source {source!r} is neither 'sample', 'sample-photos', an image folder, nor "
                            "webdataset URLs")


def check_readable(ds, source: str, size: int, max_pixels: int | None = MAX_PIXELS) -> None:
    """One clear error before any training when no image of a source can be read."""
    if isinstance(ds, ImageFolderDataset):
        ds.check_readable()
    elif is_webdataset(source):
        check_webdataset_readable(source, size, max_pixels)


class ImageDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: str = "sample",
        val: str | None = "sample",
        image_size: int | None = None,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        strict: bool = False,
        train_length: int = 100_000,
        val_length: int = 256,
        max_pixels: int | None = MAX_PIXELS,
        seed: int | None = None,
    ) -> None:
        """`image_size`: the side of the training crops; None: the model's (`vistok fit` fills it in from the
        encoder), 32 in Python. `max_pixels`: images with more pixels are skipped (checked from the header,
        before decoding); null for no limit. `seed`: of the training order and crops (None: torch's initial seed, which
        `seed_everything` sets); a resumed run keeps its checkpoint's."""
        super().__init__()
        for name, value, low in (("image_size", image_size, 1), ("batch_size", batch_size, 1),
                                 ("val_batch_size", val_batch_size, 1), ("num_workers", num_workers, 0),
                                 ("train_length", train_length, 1), ("val_length", val_length, 1),
                                 ("max_pixels", max_pixels, 1)):
            if value is not None and value < low:
                raise ValueError(f"data.{name} must be >= {low}, got {value}")
        for name, src in (("train", train), ("val", val)):
            if src and src not in SAMPLE_SOURCES and not is_webdataset(src) and not Path(src).is_dir():
                raise FileNotFoundError(f"data.{name}: {src!r} is neither 'sample', 'sample-photos', an image "
                                        "folder, nor webdataset URLs")
        self.train, self.val, self.image_size = train, val, 32 if image_size is None else image_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.strict = num_workers, strict
        self.train_length, self.val_length = train_length, val_length
        self.max_pixels = max_pixels
        self.seed = seed
        self._train_ds = None
        self._sampler_seed: int | None = None
        self._resume: dict[str, int] | None = None  # the data position of a restored checkpoint

    @property
    def batch_kinds(self) -> frozenset[str]:
        """The pixel keys training batches carry: images only."""
        return frozenset({"image"})

    def setup(self, stage: str) -> None:
        # The training source is listed and probed here, before the sanity check and any training step.
        if stage == "fit" and self._train_ds is None:
            self._train_ds = self._dataset(self.train, True)

    def _dataset(self, source: str, train: bool):
        ds = build_dataset(source, self.image_size, train, self.strict,
                           self.train_length if train else self.val_length, max_pixels=self.max_pixels)
        check_readable(ds, source, self.image_size, self.max_pixels)
        return ds

    def _loader(self, source: str, train: bool) -> DataLoader:
        if train and self._train_ds is not None:
            ds = self._train_ds
        else:
            ds = self._dataset(source, train)
        iterable = not hasattr(ds, "__len__")
        sampler = self._train_sampler(len(ds)) if train and not iterable else None
        if train and iterable and is_multiprocess():
            ds = self._repeat_per_rank(ds, source)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.val_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_images,
            drop_last=train,
            persistent_workers=self.num_workers > 0,
        )

    def _repeat_per_rank(self, ds, source: str):
        """Every rank streams its own shards without end, so no rank runs out before the others."""
        from webdataset.shardlists import expand_urls

        readers = dist.get_world_size() * max(1, self.num_workers)
        shards = len(expand_urls(source))
        if shards < readers:
            raise ValueError(f"data.train: {shards} webdataset shard(s) for {dist.get_world_size()} processes x "
                             f"{max(1, self.num_workers)} workers: every reader needs at least one shard ({source})")
        if self.trainer is not None and self.trainer.max_steps in (None, -1):
            raise ValueError("data.train is a webdataset stream and training runs on several processes: set "
                             "trainer.max_steps (each rank repeats its shards, so an epoch never ends)")
        return ds.repeat()

    def _train_sampler(self, length: int) -> ResumableSampler:
        if self._sampler_seed is None:
            self._sampler_seed = int(self.seed if self.seed is not None else torch.initial_seed() % 2**31)
        sampler = ResumableSampler(length, self._sampler_seed, self.batch_size)
        if self._resume is not None:  # the first training loader after a restore starts where the run stopped
            epoch, batches = self._resume["epoch"], self._resume["batches"]
            if batches >= len(sampler) // self.batch_size:  # saved at the end of an epoch
                epoch, batches = epoch + 1, 0
            sampler.set_epoch(epoch)  # Lightning sets it too, but only after fetching the first batch
            sampler.skip(epoch, batches)
            self._resume = None
            # Lightning cannot see that this loader resumes (its position lives here, not in the loader).
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        return sampler

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the sampler's seed, and the epoch and batches (of this epoch) trained."""
        if self._sampler_seed is None or self.trainer is None:
            return {}
        loop = self.trainer.fit_loop.epoch_loop  # batch_idx: the index, in the epoch, of the batch being trained
        return {"seed": self._sampler_seed, "epoch": self.trainer.current_epoch, "batches": loop.batch_idx + 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._sampler_seed = int(state["seed"])
            self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val, False) if self.val else []
