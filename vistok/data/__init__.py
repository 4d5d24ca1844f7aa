"""Data in: bundled photos, image folders, webdataset shards.

`ImageDataModule` and `build_dataset` live in `vistok.data.datamodule`, which imports Lightning; they are
imported on first use, so `import vistok.data` (image loading, `load_images`) stays free of Lightning.
"""

from __future__ import annotations

from typing import Any

from vistok.data.folder import ImageFolderDataset, collate_images, webdataset_images
from vistok.data.images import load_images, load_rgb, pil_to_tensor, resize_crop, tensor_to_uint8, to_rgb
from vistok.data.sample import SamplePhotoCrops

_LAZY = {"ImageDataModule": "vistok.data.datamodule", "build_dataset": "vistok.data.datamodule"}

__all__ = [
    "ImageDataModule",
    "ImageFolderDataset",
    "SamplePhotoCrops",
    "build_dataset",
    "collate_images",
    "load_images",
    "load_rgb",
    "pil_to_tensor",
    "resize_crop",
    "tensor_to_uint8",
    "to_rgb",
    "webdataset_images",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vistok.data' has no attribute {name!r}")
