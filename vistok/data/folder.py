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

from vistok.data.images import list_images, load_rgb, pil_to_tensor, resize_crop, to_rgb

log = logging.getLogger("vistok.data")


class ImageFolderDataset(Dataset):
    def __init__(self, root: str | Path, size: int, train: bool = False, strict: bool = False,
                 flip: bool = True) -> None:
        self.root = Path(root)
        self.files = list_images(self.root)
        self.size, self.train, self.strict, self.flip = size, train, strict, flip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        path = self.files[i]
        try:
            img = load_rgb(path)
        except OSError as e:
            if self.strict:
                raise
            log.warning("skipping %s", e)
            return None
        rng = random.Random(int(torch.randint(0, 2**62, (1,)))) if self.train else None
        img = resize_crop(img, self.size, rng, self.flip and self.train)
        return {"image": pil_to_tensor(img), "key": str(path.relative_to(self.root).with_suffix(""))}


def is_webdataset(source: str) -> bool:
    return ".tar" in source or source.startswith(("pipe:", "http://", "https://", "gs://", "s3://"))


def webdataset_images(urls: str, size: int, train: bool = False, strict: bool = False, shuffle: int = 1000,
                      flip: bool = True):
    """An iterable webdataset of {"image", "key", "label"?}: split by node and by worker for DDP."""
    import webdataset as wds

    handler = wds.reraise_exception if strict else wds.warn_and_continue

    def to_sample(sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        img = next((sample[k] for k in ("jpg", "jpeg", "png", "webp", "bmp") if k in sample), None)
        if img is None:
            raise ValueError(f"sample {key} in {sample.get('__url__')} has no image (jpg/png/webp/bmp)")
        rng = random.Random(int(torch.randint(0, 2**62, (1,)))) if train else None
        out = {"image": pil_to_tensor(resize_crop(to_rgb(img), size, rng, flip and train)), "key": key}
        for k in ("cls", "label"):
            if k in sample:
                out["label"] = int(sample[k])
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
    return ds.decode("pil", handler=handler).map(to_sample, handler=handler)


def collate_images(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack images, drop samples that failed to load, and count them in "skipped"."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = {"skipped": len(batch) - len(good), "key": [b["key"] for b in good]}
    out["image"] = torch.stack([b["image"] for b in good]) if good else torch.zeros(0, 3, 1, 1)
    if good and all("label" in b for b in good):
        out["label"] = torch.tensor([b["label"] for b in good])
    return out
