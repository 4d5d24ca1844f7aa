"""Data sources by name: what a `data.train` / `data.val` / `data.images` string means, and its dataset.

Image sources: "sample" (random-resized crops of scikit-image's bundled photos for training, native-resolution
patches of the held-out photos for validation), "sample-photos" (the held-out photos resized whole), a folder of
images, or webdataset URLs (brace patterns allowed, e.g. "/data/train-{000000..000999}.tar").
Video sources: "sample-clips" (the embedded camera-move clips, `vistok.data.sample_clips`; validation reads its
held-out split), "sample-moves" (a fresh procedural camera move over a random crop of a training photo per item,
`vistok.data.sample_moves`; validation reads the held-out split of "sample-clips"), a folder of video files, or
webdataset URLs of shards holding video members.
A missing source fails when its dataset is built, before any training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from vistok.data.folder import ImageFolderDataset, check_webdataset_readable, is_webdataset, webdataset_images
from vistok.data.images import IMAGE_EXTENSIONS, MAX_PIXELS
from vistok.data.sample import SamplePhotoCrops
from vistok.data.sample_clips import SampleClips
from vistok.data.sample_moves import SampleMoves
from vistok.data.video_io import MAX_FRAME_PIXELS, VIDEO_EXTENSIONS
from vistok.data.videos import ClipSpec, VideoFolderDataset, webdataset_videos

SAMPLE_SOURCES = ("sample", "sample-photos")
VIDEO_SAMPLE_SOURCES = ("sample-clips", "sample-moves")
Kind = Literal["image", "video"]


def check_source(source: str, kind: Kind, field: str) -> None:
    """A source that names nothing fails here, naming the config field."""
    named = SAMPLE_SOURCES if kind == "image" else VIDEO_SAMPLE_SOURCES
    if source in named or is_webdataset(source) or Path(source).is_dir():
        return
    what = "an image folder" if kind == "image" else "a folder of videos"
    raise FileNotFoundError(f"{field}: {source!r} is neither {' nor '.join(repr(s) for s in named)}, {what}, nor "
                            "webdataset URLs")


def source_kind(source: str) -> Kind | None:
    """What a source holds when its name says so: the named sample sources, and a folder by the first image or
    video file found in it (the folder's dataset lists it all later; one file is enough to tell). None for
    webdataset URLs and folders with neither (state `data.kind`)."""
    if source in SAMPLE_SOURCES:
        return "image"
    if source in VIDEO_SAMPLE_SOURCES:
        return "video"
    if is_webdataset(source) or not Path(source).is_dir():
        return None
    for _, _, files in os.walk(source):
        for name in files:
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS or ext in VIDEO_EXTENSIONS:
                return "image" if ext in IMAGE_EXTENSIONS else "video"
    return None


def build_dataset(source: str, size: int, train: bool, strict: bool = False, length: int = 10_000,
                  seed: int = 0, max_pixels: int | None = MAX_PIXELS):
    """The dataset of an image source (see the module docstring)."""
    if source in SAMPLE_SOURCES:
        split = "train" if train else "photos" if source == "sample-photos" else "val"
        return SamplePhotoCrops(split, size, length, seed)
    if is_webdataset(source):
        return webdataset_images(source, size, train=train, strict=strict, max_pixels=max_pixels)
    if Path(source).is_dir():
        return ImageFolderDataset(source, size, train=train, strict=strict, max_pixels=max_pixels)
    raise FileNotFoundError(f"data source {source!r} is neither 'sample', 'sample-photos', an image folder, nor "
                            "webdataset URLs")


def check_readable(ds, source: str, size: int, max_pixels: int | None = MAX_PIXELS, kind: Kind = "image") -> None:
    """One clear error before any training when no item of a source can be read (image folders and shards,
    video folders; a video shard stream reports its unreadable samples as it reads them)."""
    if isinstance(ds, (ImageFolderDataset, VideoFolderDataset)):
        ds.check_readable()
    elif kind == "image" and is_webdataset(source):
        check_webdataset_readable(source, size, max_pixels)


def build_video_dataset(source: str, spec: ClipSpec, train: bool, strict: bool = False, length: int | None = None,
                        seed: int = 0, max_pixels: int | None = MAX_FRAME_PIXELS, cache_dir: str | None = None):
    """The dataset of a video source (see the module docstring)."""
    if source == "sample-moves" and train:
        return SampleMoves(spec, length if length is not None else 10_000)
    if source in VIDEO_SAMPLE_SOURCES:  # "sample-moves" validates on the held-out sample clips
        return SampleClips("train" if train else "val", spec, length if train else None, seed, cache_dir)
    if is_webdataset(source):
        return webdataset_videos(source, spec, train=train, strict=strict, max_pixels=max_pixels)
    if Path(source).is_dir():
        return VideoFolderDataset(source, spec, train=train, strict=strict, max_pixels=max_pixels)
    raise FileNotFoundError(f"video source {source!r} is neither 'sample-clips', 'sample-moves', a folder of videos, "
                            "nor webdataset URLs")
