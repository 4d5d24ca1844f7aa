"""`VideoDataModule`: video clips for training, alone or mixed with image batches (OmniTokenizer's joint stage).

A video source is "sample-clips" (the embedded camera-move clips, `vistok.data.sample_clips`; validation reads its
held-out split), "sample-moves" (a fresh procedural camera move over a random crop of a training photo per item,
`vistok.data.sample_moves`; validation reads the held-out split of "sample-clips"), a folder of video files, or
webdataset URLs of shards holding video members. With `images` set (any source `ImageDataModule` takes: "sample",
a folder, shards), training alternates whole batches: `mix = [v, i]` gives v video batches of `batch_size` clips,
then i image batches of `image_batch_size` images, and again; OmniTokenizer's joint stage (4 videos + 8 images per
GPU) is `batch_size: 4, image_batch_size: 8, mix: [1, 1]`. Video batches are {"video": (B, 3, T, H, W), "key",
"skipped"}, image batches {"image": (B, 3, H, W), "key", "skipped"}, so a training step tells them apart by key.
An epoch ends when either map-style source would run out (no source is cycled inside an epoch).

Resuming: map-style sources are read through `ResumableSampler`s sharing one seed; the module's `state_dict`
records the epoch and the mixed batches trained, from which the number of video and image batches already
consumed follows (the mix is a fixed pattern), so a resumed run continues with the batch the interrupted one
would have read next. Webdataset sources are iterable and restart their stream (not exact).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from vistok.data.datamodule import SAMPLE_SOURCES, build_dataset, check_readable
from vistok.data.folder import collate_images, is_webdataset
from vistok.data.resumable import ResumableSampler
from vistok.data.sample_clips import SampleClips
from vistok.data.sample_moves import SampleMoves
from vistok.data.video_io import MAX_FRAME_PIXELS
from vistok.data.videos import ClipSpec, VideoFolderDataset, collate_videos, webdataset_videos

VIDEO_SAMPLE_SOURCES = ("sample-clips", "sample-moves")


def build_video_dataset(source: str, spec: ClipSpec, train: bool, strict: bool = False, length: int | None = None,
                        seed: int = 0, max_pixels: int | None = MAX_FRAME_PIXELS, cache_dir: str | None = None):
    """The dataset of a video source (see the module docstring); a missing source fails here, before work."""
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


def mix_position(batches: int, video_batches: int, image_batches: int) -> tuple[int, int]:
    """(video batches, image batches) among the first `batches` batches of the mixed stream."""
    cycle = video_batches + image_batches
    full, rest = divmod(batches, cycle)
    return full * video_batches + min(rest, video_batches), full * image_batches + max(0, rest - video_batches)


class _Samplers:
    """Forwards Lightning's `set_epoch` to every sampler of a `MixedBatches`."""

    def __init__(self, samplers: list) -> None:
        self.samplers = samplers

    def set_epoch(self, epoch: int) -> None:
        for s in self.samplers:
            s.set_epoch(epoch)


class MixedBatches:
    """`video_batches` batches of `videos`, then `image_batches` of `images`, repeated; `start` skips the
    first mixed batches (their loaders must already skip what those consumed: `mix_position`). Its length
    is the number of whole patterns both loaders can fill (unknown when either is an iterable source)."""

    def __init__(self, videos, images, video_batches: int = 1, image_batches: int = 1, start: int = 0) -> None:
        self.videos, self.images = videos, images
        self.video_batches, self.image_batches, self.start = video_batches, image_batches, start
        self.sampler = _Samplers([s for s in (getattr(videos, "sampler", None), getattr(images, "sampler", None))
                                  if callable(getattr(s, "set_epoch", None))])

    def __len__(self) -> int:
        cycles = min(len(self.videos) // self.video_batches, len(self.images) // self.image_batches)
        return cycles * (self.video_batches + self.image_batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start, self.start = self.start, 0  # a resume offset applies to one pass only
        videos, images = iter(self.videos), iter(self.images)
        cycle = self.video_batches + self.image_batches
        try:
            end = len(self)
        except TypeError:  # an iterable source: until one runs out
            end = None
        n = start
        while end is None or n < end:
            try:
                yield next(videos) if n % cycle < self.video_batches else next(images)
            except StopIteration:
                return
            n += 1


class VideoDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: str = "sample-clips",
        val: str | None = "sample-clips",
        frames: int | None = None,
        video_size: int | None = None,
        stride: int = 1,
        fps: float | None = None,
        short: str = "pad",
        batch_size: int = 4,
        val_batch_size: int | None = None,
        images: str | None = None,
        image_size: int | None = None,
        image_batch_size: int = 8,
        mix: tuple[int, int] = (1, 1),
        num_workers: int = 0,
        strict: bool = False,
        train_length: int = 100_000,
        max_pixels: int | None = MAX_FRAME_PIXELS,
        seed: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """Clips of `frames` frames `stride` apart at `fps` (None: each file's own rate), `video_size` px (both
        None: the model's, which `vistok fit` fills in from the encoder; 17 and 64 in Python);
        `short`: "pad" (repeat the last frame) or "skip" a video shorter than a clip. `images`: an image source
        mixed in at `mix` = [video batches, image batches] (null: videos only); `image_size` defaults to
        `video_size`. `train_length`: items per epoch of the sample sources. `seed`: of the training order and
        draws (None: torch's initial seed); a resumed run keeps its checkpoint's. `cache_dir`: where the
        sample clips are written (default `$VISTOK_CACHE` or ~/.cache/vistok)."""
        super().__init__()
        frames, video_size = 17 if frames is None else frames, 64 if video_size is None else video_size
        self.spec = ClipSpec(frames, video_size, stride, fps, short)  # validates the clip fields
        for name, value, low in (("batch_size", batch_size, 1), ("val_batch_size", val_batch_size, 1),
                                 ("image_batch_size", image_batch_size, 1), ("image_size", image_size, 1),
                                 ("num_workers", num_workers, 0), ("train_length", train_length, 1)):
            if value is not None and value < low:
                raise ValueError(f"data.{name} must be >= {low}, got {value}")
        mix = tuple(mix)
        if len(mix) != 2 or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mix):
            raise ValueError(f"data.mix must be [video batches, image batches], two integers >= 1, got {list(mix)}")
        for name, src in (("train", train), ("val", val)):
            if src and src not in VIDEO_SAMPLE_SOURCES and not is_webdataset(src) and not Path(src).is_dir():
                raise FileNotFoundError(f"data.{name}: {src!r} is neither 'sample-clips', 'sample-moves', a folder "
                                        "of videos, nor webdataset URLs")
        if images and images not in SAMPLE_SOURCES and not is_webdataset(images) and not Path(images).is_dir():
            raise FileNotFoundError(f"data.images: {images!r} is neither 'sample', 'sample-photos', an image folder, "
                                    "nor webdataset URLs")
        self.train, self.val, self.images = train, val, images
        self.image_size = image_size or video_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.image_batch_size, self.mix = image_batch_size, (int(mix[0]), int(mix[1]))
        self.num_workers, self.strict, self.train_length = num_workers, strict, train_length
        self.max_pixels, self.seed, self.cache_dir = max_pixels, seed, cache_dir
        self._train_ds = self._image_ds = None
        self._sampler_seed: int | None = None
        self._resume: dict[str, int] | None = None

    @property
    def batch_kinds(self) -> frozenset[str]:
        """The pixel keys training batches carry: clips, and images too when `images` is set (joint training)."""
        return frozenset({"video", "image"} if self.images else {"video"})

    def setup(self, stage: str) -> None:
        if stage == "fit" and self._train_ds is None:  # listed and probed before any training step
            self._train_ds = self._video_dataset(self.train, True)
            if self.images:
                self._image_ds = build_dataset(self.images, self.image_size, True, self.strict, self.train_length)
                check_readable(self._image_ds, self.images, self.image_size)

    def _video_dataset(self, source: str, train: bool):
        ds = build_video_dataset(source, self.spec, train, self.strict, self.train_length,
                                 max_pixels=self.max_pixels, cache_dir=self.cache_dir)
        if isinstance(ds, VideoFolderDataset):
            ds.check_readable()
        return ds

    def _loader(self, ds, batch_size: int, collate, train: bool, skip: tuple[int, int] | None = None,
                stream: int = 0) -> DataLoader:
        sampler = None
        if train and hasattr(ds, "__len__"):
            if self._sampler_seed is None:
                self._sampler_seed = int(self.seed if self.seed is not None else torch.initial_seed() % 2**31)
            # `stream` 1 (images) gets its own seed: item i of both sources must not share its random draws
            sampler = ResumableSampler(len(ds), self._sampler_seed + 7919 * stream, batch_size)
            if skip is not None:
                sampler.set_epoch(skip[0])  # Lightning sets it too, but only after fetching the first batch
                sampler.skip(*skip)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate, drop_last=train, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        if self._train_ds is None:
            self.setup("fit")
        epoch, start = 0, 0
        if self._resume is not None:
            epoch, start = self._resume["epoch"], self._resume["batches"]
            self._resume = None
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        v, i = mix_position(start, *self.mix) if self.images else (start, 0)
        videos = self._loader(self._train_ds, self.batch_size, collate_videos, True, (epoch, v))
        if not self.images:
            if start and start >= len(videos.sampler) // self.batch_size:  # saved at the end of an epoch
                videos.sampler.set_epoch(epoch + 1)
                videos.sampler.skip(epoch + 1, 0)
            return videos
        images = self._loader(self._image_ds, self.image_batch_size, collate_images, True, (epoch, i), stream=1)
        mixed = MixedBatches(videos, images, *self.mix, start=start)
        try:
            if start >= len(mixed):  # saved at the end of an epoch: the next one from its start
                for loader in (videos, images):
                    loader.sampler.set_epoch(epoch + 1)
                    loader.sampler.skip(epoch + 1, 0)
                mixed.start = 0
        except TypeError:
            pass
        return mixed

    def val_dataloader(self):
        if not self.val:
            return []
        return self._loader(self._video_dataset(self.val, False), self.val_batch_size, collate_videos, False)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the samplers' seed, the epoch and the (mixed) batches trained in it."""
        if self._sampler_seed is None or self.trainer is None:
            return {}
        loop = self.trainer.fit_loop.epoch_loop
        return {"seed": self._sampler_seed, "epoch": self.trainer.current_epoch, "batches": loop.batch_idx + 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._sampler_seed = int(state["seed"])
            self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}
