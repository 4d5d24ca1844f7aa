"""Image folders (recursive) and webdataset shards as datasets of {"image", "key"} samples.

A file that cannot be decoded is skipped with a warning naming it (and counted by the collate function), or
raises when `strict` is set.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vistok.data.images import (
    MAX_PIXELS,
    load_rgb,
    no_images_error,
    pil_to_tensor,
    resize_crop,
    scan_images,
)
from vistok.data.webdataset_sample import decode_sample

log = logging.getLogger("vistok.data")


class ImageFolderDataset(Dataset):
    """Images under `root` (recursive). Entries the listing cannot read (unreadable folders, broken or
    looping symlinks, FIFOs: see `scan_images`) are logged as warnings, or raise under `strict`; so does a
    file that cannot be decoded or has more than `max_pixels` pixels, when it is loaded."""

    def __init__(self, root: str | Path, size: int, train: bool = False, strict: bool = False,
                 flip: bool = True, max_pixels: int | None = MAX_PIXELS) -> None:
        self.root = Path(root)
        listing = scan_images(self.root)
        for rel, reason in listing.skipped:
            if strict:
                raise OSError(f"cannot read {self.root / rel}: {reason}")
            log.warning("skipping %s: %s", self.root / rel, reason)
        if not listing.files:
            raise no_images_error(listing)
        self.files, self.skipped = listing.files, listing.skipped
        self.size, self.train, self.strict, self.flip = size, train, strict, flip
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int | tuple[int, int]) -> dict[str, Any] | None:
        """`i`: an index, or (index, item seed) from a `ResumableSampler` (the training crop and flip are then
        drawn from that seed instead of torch's RNG)."""
        i, seed = i if isinstance(i, tuple) else (i, None)
        path = self.files[i]
        try:
            img = load_rgb(path, self.max_pixels)
        except OSError as e:
            if self.strict:
                raise
            log.warning("skipping %s", e)
            return None
        if seed is None and self.train:
            seed = int(torch.randint(0, 2**62, (1,)))
        rng = random.Random(seed) if self.train else None
        img = resize_crop(img, self.size, rng, self.flip and self.train)
        return {"image": pil_to_tensor(img), "key": str(path.relative_to(self.root).with_suffix(""))}

    def check_readable(self) -> None:
        """Raise one ValueError when not a single file of the folder decodes (stops at the first good one)."""
        first = None
        for path in self.files:
            try:
                load_rgb(path, self.max_pixels)
                return
            except OSError as e:
                first = first or str(e)
        raise ValueError(f"none of the {len(self.files)} images under {self.root} can be read (first: {first})")


def is_webdataset(source: str) -> bool:
    return ".tar" in source or source.startswith(("pipe:", "http://", "https://", "gs://", "s3://"))


def webdataset_images(urls: str, size: int, train: bool = False, strict: bool = False, shuffle: int = 1000,
                      flip: bool = True, max_pixels: int | None = MAX_PIXELS):
    """An iterable webdataset of {"image", "key", "label"?}: split by node and by worker for DDP. A sample
    whose image cannot be decoded or has more than `max_pixels` pixels is skipped with a warning naming it
    (raises under `strict`)."""
    import webdataset as wds

    handler = wds.reraise_exception if strict else wds.warn_and_continue

    def to_sample(sample: dict[str, Any]) -> dict[str, Any]:
        try:
            img, label = decode_sample(sample, max_pixels)
        except ValueError as e:
            raise ValueError(f"{e} (in {sample.get('__url__')})") from e
        rng = random.Random(int(torch.randint(0, 2**62, (1,)))) if train else None
        out = {"image": pil_to_tensor(resize_crop(img, size, rng, flip and train)), "key": sample["__key__"]}
        if label is not None:
            out["label"] = label
        return out

    ds = wds.WebDataset(
        urls,
        shardshuffle=100 if train else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        handler=handler,
        empty_check=False,
    )
    if train:
        ds = ds.shuffle(shuffle)
    return ds.map(to_sample, handler=handler)


def check_webdataset_readable(urls: str, size: int, max_pixels: int | None = MAX_PIXELS) -> None:
    """Raise one ValueError when not a single sample of the shards decodes (stops at the first good one)."""
    for _ in webdataset_images(urls, size, train=False, max_pixels=max_pixels):
        return
    raise ValueError(f"no image of {urls} can be read (the shards are missing, empty or every sample is corrupt)")


def collate_images(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack images, drop samples that failed to load, and count them in "skipped"."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = {"skipped": len(batch) - len(good), "key": [b["key"] for b in good]}
    out["image"] = torch.stack([b["image"] for b in good]) if good else torch.zeros(0, 3, 1, 1)
    if good and all("label" in b for b in good):
        out["label"] = torch.tensor([b["label"] for b in good])
    return out
