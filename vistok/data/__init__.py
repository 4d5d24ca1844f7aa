"""Data in: bundled photos, image folders, webdataset shards; videos (PyAV) and the embedded sample clips.

`DataModule` lives in `vistok.data.datamodule`, which imports Lightning; it is imported on first use, so
`import vistok.data` (image loading, `load_images`) stays free of Lightning. What a source name means:
`vistok.data.sources`.
"""

from __future__ import annotations

from typing import Any

from vistok.data.folder import ImageFolderDataset, collate_images, webdataset_images
from vistok.data.images import load_images, load_rgb, pil_to_tensor, resize_crop, tensor_to_uint8, to_rgb
from vistok.data.sample import SamplePhotoCrops
from vistok.data.sample_clips import SampleClips
from vistok.data.sources import build_dataset, build_video_dataset
from vistok.data.video_io import VideoError, probe_video, read_video, write_video
from vistok.data.videos import ClipSpec, VideoFolderDataset, collate_videos, load_clip, webdataset_videos

_LAZY = {"DataModule": "vistok.data.datamodule"}

__all__ = [
    "ClipSpec",
    "DataModule",
    "ImageFolderDataset",
    "SampleClips",
    "SamplePhotoCrops",
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
