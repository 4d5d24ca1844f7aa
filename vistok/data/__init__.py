"""Data in: bundled photos, image folders, webdataset shards; videos (PyAV) and the embedded sample clips.

`ImageDataModule` and `build_dataset` live in `vistok.data.datamodule`, which imports Lightning; they are
imported on first use, so `import vistok.data` (image loading, `load_images`) stays free of Lightning.
"""

from __future__ import annotations

from typing import Any

from vistok.data.folder import ImageFolderDataset, collate_images, webdataset_images
from vistok.data.images import load_images, load_rgb, pil_to_tensor, resize_crop, tensor_to_uint8, to_rgb
from vistok.data.sample import SamplePhotoCrops
from vistok.data.sample_clips import SampleClips
from vistok.data.video_io import VideoError, probe_video, read_video, write_video
from vistok.data.videos import ClipSpec, VideoFolderDataset, collate_videos, load_clip, webdataset_videos

_LAZY = {"ImageDataModule": "vistok.data.datamodule", "build_dataset": "vistok.data.datamodule",
         "VideoDataModule": "vistok.data.video_datamodule", "build_video_dataset": "vistok.data.video_datamodule"}

__all__ = [
    "ClipSpec",
    "ImageDataModule",
    "ImageFolderDataset",
    "SampleClips",
    "SamplePhotoCrops",
    "VideoDataModule",
    "VideoError",
    "VideoFolderDataset",
    "build_dataset",
    "build_video_dataset",
    "collate_images",
    "collate_videos",
    "load_clip",
    "load_images",
    "load_rgb",
    "pil_to_tensor",
    "probe_video",
    "read_video",
    "resize_crop",
    "tensor_to_uint8",
    "to_rgb",
    "webdataset_images",
    "webdataset_videos",
    "write_video",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vistok.data' has no attribute {name!r}")
