"""`ImageDataModule`: one Lightning data module for the bundled photos, image folders and webdataset shards.

A source is "sample" (random-resized crops of scikit-image's bundled photos for training, native-resolution
patches of the held-out photos for validation), "sample-photos" (the held-out photos resized whole), a folder
of images, or webdataset URLs (brace patterns allowed, e.g. "/data/train-{000000..000999}.tar"). Sources are
checked when the module is built, so a wrong path fails before any training starts.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from vistok.data.folder import (
    ImageFolderDataset,
    check_webdataset_readable,
    collate_images,
    is_webdataset,
    webdataset_images,
)
from vistok.data.images import MAX_PIXELS
from vistok.data.sample import SamplePhotoCrops

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
        image_size: int = 32,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        strict: bool = False,
        train_length: int = 100_000,
        val_length: int = 256,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        """`max_pixels`: images with more pixels are skipped (checked from the header, before decoding);
        null for no limit."""
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
        self.train, self.val, self.image_size = train, val, image_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.strict = num_workers, strict
        self.train_length, self.val_length = train_length, val_length
        self.max_pixels = max_pixels
        self._train_ds = None

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
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.val_batch_size,
            shuffle=train and not iterable,
            num_workers=self.num_workers,
            collate_fn=collate_images,
            drop_last=train,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val, False) if self.val else []
