"""Video folders and webdataset shards of video files as datasets of {"video": (3, T, size, size), "key"} clips.

A clip is `frames` frames `stride` apart on the video's timeline resampled to `fps` (None: the file's own
rate; see `vistok.data.video_io.read_video`), so a 60 fps file and a 24 fps one give clips of the same
duration when `fps` is set. Training clips start at a random frame and share one random square crop (and
flip) across their frames, drawn from the item seed a `ResumableSampler` passes with the index; evaluation
clips start at the first frame with a centre crop. Each frame is resized with its shorter side to `size`
exactly as images are (`vistok.data.images.resize_crop`), so a one-frame clip equals the image pipeline's crop.

A video with fewer frames than a clip spans is padded by repeating its last frame (`short="pad"`) or skipped
(`short="skip"`). A file that cannot be read (corrupt, truncated, unsupported, no video stream) is skipped with
a warning naming it and the reason, and counted in the batch's "skipped"; under `strict` it raises an OSError
naming it. Nothing a file contains stops an epoch unless `strict` is set.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vistok.data.images import pil_to_tensor, resize_crop, scan_images
from vistok.data.video_io import MAX_FRAME_PIXELS, VIDEO_EXTENSIONS, VideoError, probe_video, read_video

log = logging.getLogger("vistok.data")
SHORT_MODES = ("pad", "skip")
WDS_VIDEO_KEYS = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)


class ClipTooShort(VideoError):
    """A video shorter than a clip, with `short="skip"`."""


@dataclass(frozen=True)
class ClipSpec:
    """What a clip is: `frames` frames `stride` apart at `fps` (None: native), `size` x `size` pixels."""

    frames: int = 17
    size: int = 64
    stride: int = 1
    fps: float | None = None
    short: str = "pad"

    def __post_init__(self) -> None:
        for name in ("frames", "size", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"clip {name} must be a positive integer, got {value!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"clip fps must be positive or None (the file's own rate), got {self.fps!r}")
        if self.short not in SHORT_MODES:
            raise ValueError(f"short must be one of {SHORT_MODES} (pad by repeating the last frame, or skip the "
                             f"video), got {self.short!r}")

    @property
    def span(self) -> int:
        """Frames of the resampled video that one clip covers."""
        return (self.frames - 1) * self.stride + 1


def load_clip(source: str | Path | bytes, spec: ClipSpec, rng: random.Random | None = None, flip: bool = False,
              name: str | None = None, max_pixels: int | None = MAX_FRAME_PIXELS) -> torch.Tensor:
    """One clip of a video file (or its bytes): float (3, T, size, size) in [-1, 1].

    `rng`: random start and crop (training); None: the first frames, centre crop. Raises `VideoError` (an
    OSError naming the file) when it cannot be read, `ClipTooShort` when it is short and `spec.short` is
    "skip"."""
    name = name if name is not None else "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    info = probe_video(source, name, max_pixels)
    rate = spec.fps or info.fps
    total = info.count(spec.fps)  # from the header: an estimate
    start = rng.randint(0, total - spec.span) if rng is not None and total and total > spec.span else 0
    crop_seed = rng.getrandbits(62) if rng is not None else None

    def to_clip_frame(arr: np.ndarray) -> np.ndarray:  # each frame cropped as it is decoded: bounded memory
        crop_rng = random.Random(crop_seed) if crop_seed is not None else None  # one box and flip for all
        return np.asarray(resize_crop(Image.fromarray(arr), spec.size, crop_rng, flip), dtype=np.uint8)

    frames, rate = read_video(source, spec.fps, start / rate, spec.span, name, max_pixels, to_clip_frame)
    if len(frames) < spec.span and start > 0:  # the header promised more than decodes: from the beginning
        frames, rate = read_video(source, spec.fps, 0.0, spec.span, name, max_pixels, to_clip_frame)
    frames = frames[:: spec.stride]  # (T', size, size, 3)
    if len(frames) < spec.frames:
        if spec.short == "skip" or len(frames) == 0:
            raise ClipTooShort(f"video {name} is too short: {len(frames)} of the {spec.frames} frames a clip takes "
                               f"(stride {spec.stride} at {rate:g} fps); set short: pad to repeat its last frame")
        frames = np.concatenate([frames, np.repeat(frames[-1:], spec.frames - len(frames), axis=0)])
    out = [pil_to_tensor(arr) for arr in frames]
    return torch.stack(out, dim=1)  # (3, T, size, size)


def _failed(e: Exception, name: str, strict: bool) -> None:
    """Report a video that could not be turned into a clip: raise under `strict`, else warn."""
    if not isinstance(e, VideoError):  # anything unexpected still names the file
        e = VideoError(f"cannot read video {name}: {type(e).__name__}: {e}")
    if strict:
        raise e
    log.warning("skipping %s", e)


class VideoFolderDataset(Dataset):
    """Video files under `root` (recursive; `VIDEO_EXTENSIONS`), one clip per item (see the module
    docstring). Entries the listing cannot read are logged as warnings, or raise under `strict`."""

    def __init__(self, root: str | Path, spec: ClipSpec, train: bool = False, strict: bool = False,
                 flip: bool = True, max_pixels: int | None = MAX_FRAME_PIXELS) -> None:
        self.root = Path(root)
        listing = scan_images(self.root, VIDEO_EXTENSIONS)
        for rel, reason in listing.skipped:
            if strict:
                raise OSError(f"cannot read {self.root / rel}: {reason}")
            log.warning("skipping %s: %s", self.root / rel, reason)
        if not listing.files:
            msg = f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {self.root}"
            if listing.skipped:
                msg += f" ({len(listing.skipped)} entries could not be read: {listing.skipped[0][0]}: " \
                       f"{listing.skipped[0][1]})"
            raise FileNotFoundError(msg)
        self.files, self.skipped = listing.files, listing.skipped
        self.spec, self.train, self.strict, self.flip, self.max_pixels = spec, train, strict, flip, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def key(self, i: int) -> str:
        return str(self.files[i].relative_to(self.root).with_suffix(""))

    def __getitem__(self, i: int | tuple[int, int]) -> dict[str, Any] | None:
        """`i`: an index, or (index, item seed) from a `ResumableSampler` (training start, crop and flip are
        then drawn from that seed instead of torch's RNG). None when the file is skipped."""
        i, seed = i if isinstance(i, tuple) else (i, None)
        if seed is None and self.train:
            seed = int(torch.randint(0, 2**62, (1,)))
        rng = random.Random(seed) if self.train else None
        path = self.files[i]
        try:
            video = load_clip(path, self.spec, rng, self.flip and self.train, str(path), self.max_pixels)
        except Exception as e:
            _failed(e, str(path), self.strict)
            return None
        return {"video": video, "key": self.key(i)}

    def check_readable(self) -> None:
        """Raise one ValueError when not a single file opens (stops at the first good one)."""
        first = None
        for path in self.files:
            try:
                probe_video(path, max_pixels=self.max_pixels)
                return
            except VideoError as e:
                first = first or str(e)
        raise ValueError(f"none of the {len(self.files)} videos under {self.root} can be read (first: {first})")


def webdataset_videos(urls: str, spec: ClipSpec, train: bool = False, strict: bool = False, shuffle: int = 100,
                      flip: bool = True, max_pixels: int | None = MAX_FRAME_PIXELS):
    """An iterable webdataset of {"video", "key", "label"?} from samples holding a video member (`mp4`,
    `webm`, `gif`, ...), split by node and worker for DDP. A sample without a readable video is skipped with a
    warning naming it and its shard (raises under `strict`)."""
    import webdataset as wds

    from vistok.data.webdataset_sample import sample_label

    handler = wds.reraise_exception if strict else wds.warn_and_continue

    def to_sample(sample: dict[str, Any]) -> dict[str, Any] | None:
        key = sample.get("__key__")
        ext = next((k for k in WDS_VIDEO_KEYS if k in sample), None)
        name = f"{key}.{ext} (in {sample.get('__url__')})"
        rng = random.Random(int(torch.randint(0, 2**62, (1,)))) if train else None
        try:
            if ext is None:
                raise VideoError(f"no video ({'/'.join(WDS_VIDEO_KEYS)}) in sample {key} "
                                 f"(in {sample.get('__url__')})")
            video = load_clip(bytes(sample[ext]), spec, rng, flip and train, name, max_pixels)
        except Exception as e:
            _failed(e, name, strict)
            return None
        out = {"video": video, "key": key}
        label = sample_label(sample)
        if label is not None:
            out["label"] = label
        return out

    ds = wds.WebDataset(urls, shardshuffle=100 if train else False, nodesplitter=wds.split_by_node,
                        workersplitter=wds.split_by_worker, handler=handler, empty_check=False)
    if train:
        ds = ds.shuffle(shuffle)
    return ds.map(to_sample, handler=handler).select(lambda s: s is not None)


def collate_videos(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack clips into "video" (B, 3, T, H, W), drop samples that were skipped and count them in "skipped"
    (the bookkeeping of image batches, `vistok.data.folder.collate_images`)."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = {"skipped": len(batch) - len(good), "key": [b["key"] for b in good]}
    out["video"] = torch.stack([b["video"] for b in good]) if good else torch.zeros(0, 3, 1, 1, 1)
    if good and all("label" in b for b in good):
        out["label"] = torch.tensor([b["label"] for b in good])
    return out
