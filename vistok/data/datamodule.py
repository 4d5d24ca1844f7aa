"""`DataModule`: the one Lightning data module, for images, video clips, and both in turn.

`kind` says what a training batch holds: "image" ({"image": (B, 3, H, W), "key", "skipped"}) or "video"
({"video": (B, 3, T, H, W), "key", "skipped"}); left out, the training source's name says it (the named sample
sources, a folder by its first media file; with `images` mixed in, video; webdataset URLs are otherwise images unless
`kind: video`). Sources are described in
`vistok.data.sources` and checked when the module is built, so a wrong path fails before any training starts.
Video training may mix in an image source (`images`): `mix = [v, i]` gives v video batches of `batch_size` clips,
then i image batches of `image_batch_size` images, and again; OmniTokenizer's joint stage (4 videos + 8 images per
GPU) is `batch_size: 4, image_batch_size: 8, mix: [1, 1]`. A training step tells the batches apart by key.
An epoch ends when either map-style source would run out (no source is cycled inside an epoch). `image_size` is
the side of the images and of the clips' frames; `vistok fit` fills it and `frames` in from the encoder.

Resuming: map-style training sources (the sample photos and clips, folders) are read through `ResumableSampler`s
sharing one seed: the order and every crop are a function of (`seed`, epoch), and the module's `state_dict`
(saved in every checkpoint) records the epoch and the (mixed) batches trained, from which the batches each source
already gave follow (the mix is a fixed pattern), so a resumed run continues with the batch the interrupted one
would have read next. Webdataset sources are iterable: a resumed run restarts their stream (not exact). Under
several processes each rank reads its own shards, and its training stream repeats them without end (stop by
`trainer.max_steps`): streams of unequal length would end the epoch on one rank while DDP waits on the others.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vistok.data.folder import collate_images
from vistok.data.images import MAX_PIXELS
from vistok.data.mixing import MixedBatches, mix_position
from vistok.data.resumable import ResumableSampler
from vistok.data.sources import Kind, build_dataset, build_video_dataset, check_readable, check_source, source_kind
from vistok.data.video_io import MAX_FRAME_PIXELS
from vistok.data.videos import ClipSpec, collate_videos
from vistok.devices import is_multiprocess

# Per kind when not stated: the side of a training image or frame, and the batch size.
DEFAULT_SIZE = {"image": 32, "video": 64}
DEFAULT_BATCH = {"image": 32, "video": 4}


class DataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: str = "sample",
        val: str | None = "sample",
        kind: Kind | None = None,
        image_size: int | None = None,
        frames: int | None = None,
        stride: int = 1,
        fps: float | None = None,
        short: str = "pad",
        batch_size: int | None = None,
        val_batch_size: int | None = None,
        images: str | None = None,
        image_batch_size: int = 8,
        mix: tuple[int, int] = (1, 1),
        num_workers: int = 0,
        strict: bool = False,
        train_length: int = 100_000,
        val_length: int = 256,
        max_pixels: int | None = MAX_PIXELS,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        seed: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """`kind`: "image" or "video" (None: from the training source's name). `image_size`: the side of the
        training crops and frames (None: the model's, which `vistok fit` fills in from the encoder; 32 for images
        and 64 for clips in Python). Clips: `frames` frames (None: the model's; 17 in Python) `stride` apart at
        `fps` (None: each file's own rate); `short`: "pad" (repeat the last frame) or "skip" a video shorter than
        a clip. `batch_size`: None: 32 images or 4 clips. `images`: an image source mixed into video training at
        `mix` = [video batches, image batches] (null: videos only). `train_length`, `val_length`: items per epoch
        of the sample sources. `max_pixels`, `max_frame_pixels`: images and video frames with more pixels are
        skipped (checked from the header, before decoding); null for no limit. `seed`: of the training order and
        draws (None: torch's initial seed, which `seed_everything` sets); a resumed run keeps its checkpoint's.
        `cache_dir`: where the sample clips are written (default `$VISTOK_CACHE` or ~/.cache/vistok)."""
        super().__init__()
        if kind not in (None, "image", "video"):
            raise ValueError(f"data.kind must be 'image' or 'video', got {kind!r}")
        for name, value, low in (("image_size", image_size, 1), ("batch_size", batch_size, 1),
                                 ("val_batch_size", val_batch_size, 1), ("image_batch_size", image_batch_size, 1),
                                 ("num_workers", num_workers, 0), ("train_length", train_length, 1),
                                 ("val_length", val_length, 1), ("max_pixels", max_pixels, 1),
                                 ("max_frame_pixels", max_frame_pixels, 1)):
            if value is not None and value < low:
                raise ValueError(f"data.{name} must be >= {low}, got {value}")
        kind = (kind or (source_kind(train) if train else None) or ("video" if images else None)
                or (source_kind(val) if val else None) or "image")
        for name, src in (("train", train), ("val", val)):
            if src:
                check_source(src, kind, f"data.{name}")
        mix = tuple(mix)
        if len(mix) != 2 or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mix):
            raise ValueError(f"data.mix must be [video batches, image batches], two integers >= 1, got {list(mix)}")
        if images:
            if kind != "video":
                raise ValueError(f"data.images ({images!r}) mixes images into video training, but data.train "
                                 f"({train!r}) holds images: give a video source (or data.kind: video)")
            check_source(images, "image", "data.images")
        if kind == "image" and (fps is not None or stride != 1 or short != "pad"):
            raise ValueError("data.fps, data.stride and data.short choose video clips, but data.train "
                             f"({train!r}) holds images: leave them out (or give a video source)")
        self.kind: Kind = kind
        self.train, self.val, self.images = train, val, images
        self.image_size = image_size or DEFAULT_SIZE[kind]
        # the clip (also validates its fields); images-only modules keep it for a model's later video use
        self.spec = ClipSpec(17 if frames is None else frames, self.image_size, stride, fps, short)
        self.batch_size = batch_size or DEFAULT_BATCH[kind]
        self.val_batch_size = val_batch_size or self.batch_size
        self.image_batch_size, self.mix = image_batch_size, (int(mix[0]), int(mix[1]))
        self.num_workers, self.strict = num_workers, strict
        self.train_length, self.val_length = train_length, val_length
        self.max_pixels, self.max_frame_pixels = max_pixels, max_frame_pixels
        self.seed, self.cache_dir = seed, cache_dir
        self._train_ds = self._image_ds = None
        self._sampler_seed: int | None = None
        self._resume: dict[str, int] | None = None  # the data position of a restored checkpoint

    @property
    def batch_kinds(self) -> frozenset[str]:
        """The pixel keys training batches carry: "image" or "video", both when images are mixed in."""
        return frozenset({"video", "image"} if self.images else {self.kind})

    def setup(self, stage: str) -> None:
        # The training sources are listed and probed here, before the sanity check and any training step.
        if stage == "fit" and self._train_ds is None:
            self._train_ds = self._dataset(self.train, True, self.kind)
            if self.images:
                self._image_ds = self._dataset(self.images, True, "image")

    def _dataset(self, source: str, train: bool, kind: Kind):
        if kind == "video":
            ds = build_video_dataset(source, self.spec, train, self.strict, self.train_length,
                                     max_pixels=self.max_frame_pixels, cache_dir=self.cache_dir)
            check_readable(ds, source, self.image_size, kind="video")
            return ds
        ds = build_dataset(source, self.image_size, train, self.strict,
                           self.train_length if train else self.val_length, max_pixels=self.max_pixels)
        check_readable(ds, source, self.image_size, self.max_pixels)
        return ds

    def _loader(self, ds, source: str, kind: Kind, train: bool, skip: tuple[int, int] = (0, 0),
                stream: int = 0) -> DataLoader:
        """`skip`: (epoch, batches of this source already trained); `stream` 1 (mixed-in images) gets its own
        seed: item i of both sources must not share its random draws."""
        batch_size = (self.image_batch_size if stream else self.batch_size) if train else self.val_batch_size
        sampler = None
        if train and hasattr(ds, "__len__"):
            if self._sampler_seed is None:
                self._sampler_seed = int(self.seed if self.seed is not None else torch.initial_seed() % 2**31)
            sampler = ResumableSampler(len(ds), self._sampler_seed + 7919 * stream, batch_size)
            epoch, batches = skip
            if batches and batches >= len(sampler) // batch_size:  # saved at the end of an epoch: the next one
                epoch, batches = epoch + 1, 0
            sampler.set_epoch(epoch)  # Lightning sets it too, but only after fetching the first batch
            sampler.skip(epoch, batches)
        elif train and is_multiprocess():
            ds = self._repeat_per_rank(ds, source)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_videos if kind == "video" else collate_images, drop_last=train,
                          persistent_workers=self.num_workers > 0)

    def _repeat_per_rank(self, ds, source: str):
        """Every rank streams its own shards without end, so no rank runs out before the others."""
        from webdataset.shardlists import expand_urls

        readers = dist.get_world_size() * max(1, self.num_workers)
        shards = len(expand_urls(source))
        if shards < readers:
            raise ValueError(f"data: {shards} webdataset shard(s) for {dist.get_world_size()} processes x "
                             f"{max(1, self.num_workers)} workers: every reader needs at least one shard ({source})")
        if self.trainer is not None and self.trainer.max_steps in (None, -1):
            raise ValueError("data: a webdataset stream trains on several processes: set trainer.max_steps (each "
                             "rank repeats its shards, so an epoch never ends)")
        return ds.repeat()

    def train_dataloader(self):
        if self._train_ds is None:
            self.setup("fit")
        epoch, start = 0, 0
        if self._resume is not None:  # the first training loader after a restore starts where the run stopped
            epoch, start = self._resume["epoch"], self._resume["batches"]
            self._resume = None
            # Lightning cannot see that this loader resumes (its position lives here, not in the loader).
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        if not self.images:
            return self._loader(self._train_ds, self.train, self.kind, True, (epoch, start))
        v, i = mix_position(start, *self.mix)
        videos = self._loader(self._train_ds, self.train, "video", True, (epoch, v))
        images = self._loader(self._image_ds, self.images, "image", True, (epoch, i), stream=1)
        mixed = MixedBatches(videos, images, *self.mix, start=start)
        try:
            if start >= len(mixed):  # saved at the end of an epoch: the next one from its start
                for loader in (videos, images):
                    loader.sampler.set_epoch(epoch + 1)
                    loader.sampler.skip(epoch + 1, 0)
                mixed.start = 0
        except TypeError:  # an iterable source: no length, no end of epoch to find
            pass
        return mixed

    def val_dataloader(self) -> DataLoader | list:
        if not self.val:
            return []
        return self._loader(self._dataset(self.val, False, self.kind), self.val, self.kind, False)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the samplers' seed, the epoch and the (mixed) batches trained in it."""
        if self._sampler_seed is None or self.trainer is None:
            return {}
        loop = self.trainer.fit_loop.epoch_loop  # batch_idx: the index, in the epoch, of the batch being trained
        return {"seed": self._sampler_seed, "epoch": self.trainer.current_epoch, "batches": loop.batch_idx + 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._sampler_seed = int(state["seed"])
            self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}

