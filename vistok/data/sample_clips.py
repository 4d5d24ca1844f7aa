"""The embedded default video data ("sample-clips"): camera moves over the bundled photos, written as real mp4
files, plus the one animated image scikit-image ships.

Each photo gets `MOVES` clips of a virtual camera gliding over it: a pan, a zoom in, a zoom out and a pan with
a slow roll, each with a random direction, speed (a few pixels per frame) and a rotation of at most 6 degrees,
eased in and out (never to a standstill) so that consecutive frames are close but never equal. Frames are
rendered at `RENDER_SIZE` px (an affine warp of the photo, box-reduced first so the downscale does not alias)
and encoded with H.264 at `CLIP_FPS` (x264 without its SIMD code, which is not bit-reproducible): the files go
through the same decoder as a user's videos. The training split uses the image sample's training photos
(`vistok.data.sample.TRAIN_PHOTOS`) and scikit-image's 24-frame GIF (`no_time_for_that_tiny.gif`, real
motion, copied as is); the held-out split ("val") uses the photos the image
sample holds out (coffee, rocket, Grace Hopper), so image and video evaluations never see a training photo.

The clips are a pure function of (`seed`, the parameters): they are written once into a cache folder named by
them (`$VISTOK_CACHE` or `~/.cache/vistok`, `sample-clips/...`), via a temporary folder renamed into place, so
concurrent processes (DDP ranks) never read a half-written set, and reused afterwards.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vistok.data.images import load_rgb
from vistok.data.sample import HELD_OUT_PHOTOS, TRAIN_PHOTOS, photo_dir, photo_path
from vistok.data.video_io import write_video
from vistok.data.videos import ClipSpec, VideoFolderDataset

RENDER_SIZE = 64
CLIP_FPS = 8
CLIP_FRAMES = 33  # 4 s at 8 fps: room for a random 17-frame clip
MOVES = ("pan", "zoom-in", "zoom-out", "pan-roll")
GIF = "no_time_for_that_tiny.gif"
SPLITS = ("train", "val")
VERSION = 2  # bump when the rendering changes, so old caches are not reused


def cache_root() -> Path:
    return Path(os.environ.get("VISTOK_CACHE") or Path.home() / ".cache" / "vistok")


def _ease(p: float) -> float:
    """Half linear, half cosine ease: the camera starts and stops gently but never stands still (a frozen
    frame would make consecutive frames identical)."""
    return 0.5 * p + 0.25 - 0.25 * math.cos(math.pi * p)


def render_move(photo: Image.Image, move: str, rng: random.Random, frames: int = CLIP_FRAMES,
                size: int = RENDER_SIZE, only: range | None = None) -> np.ndarray:
    """(frames, size, size, 3) uint8: a camera `move` over `photo`, its parameters drawn from `rng`; `only`:
    render just these frames of the `frames`-frame move (a window of it, at the move's own speed)."""
    w, h = photo.size
    short = min(w, h)
    side0 = short * rng.uniform(0.45, 0.7)  # the square window's side at the start
    zoom = rng.uniform(1.15, 1.4)
    side1 = side0 / zoom if move == "zoom-in" else side0 * zoom if move == "zoom-out" else side0
    if move == "zoom-out":
        side0, side1 = side0 / zoom, side0
    roll = rng.uniform(2.0, 6.0) * rng.choice((-1, 1)) if move == "pan-roll" else rng.uniform(-1.0, 1.0)
    big = max(side0, side1)
    margin = big / 2 * (abs(math.cos(math.radians(roll))) + abs(math.sin(math.radians(roll)))) + 1
    travel = big * rng.uniform(0.15, 0.35) if move.startswith("pan") else big * rng.uniform(0.0, 0.08)
    direction = rng.uniform(0, 2 * math.pi)
    dx, dy = travel * math.cos(direction), travel * math.sin(direction)
    lo_x, hi_x = margin + max(0.0, -dx), w - margin - max(0.0, dx)
    lo_y, hi_y = margin + max(0.0, -dy), h - margin - max(0.0, dy)
    if lo_x > hi_x or lo_y > hi_y:  # the path does not fit: stay near the centre
        dx = dy = 0.0
        lo_x = hi_x = w / 2
        lo_y = hi_y = h / 2
    cx0, cy0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    factor = max(1, int(min(side0, side1) / (1.5 * size)))  # box-reduce once, so the warp never aliases
    src = photo.reduce(factor) if factor > 1 else photo
    keep = range(frames) if only is None else only
    out = np.empty((len(keep), size, size, 3), np.uint8)
    for n, f in enumerate(keep):
        p = _ease(f / max(1, frames - 1))
        cx, cy = (cx0 + dx * p) / factor, (cy0 + dy * p) / factor
        side = (side0 + (side1 - side0) * p) / factor
        a = math.radians(roll * p)
        k = side / size  # source pixels per output pixel
        m00, m01, m10, m11 = k * math.cos(a), -k * math.sin(a), k * math.sin(a), k * math.cos(a)
        half = size / 2
        # PIL's AFFINE maps each output (x, y) to the source point (m00 x + m01 y + c, m10 x + m11 y + f).
        coeffs = (m00, m01, cx - m00 * half - m01 * half, m10, m11, cy - m10 * half - m11 * half)
        out[n] = np.asarray(src.transform((size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC))
    return out


def clip_dir(seed: int = 0, frames: int = CLIP_FRAMES, size: int = RENDER_SIZE, fps: int = CLIP_FPS,
             cache_dir: str | Path | None = None) -> Path:
    """The folder holding the clips of these parameters (`train/`, `val/`, `manifest.json`), written once."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "sample-clips"
    final = root / f"v{VERSION}-{size}px-{frames}f-{fps}fps-seed{seed}"
    if (final / "manifest.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        manifest: dict[str, list[str]] = {}
        for split, names in (("train", TRAIN_PHOTOS), ("val", HELD_OUT_PHOTOS)):
            manifest[split] = []
            for name in names:
                photo = load_rgb(photo_path(name))
                for j, move in enumerate(MOVES):
                    rng = random.Random(f"{seed}/{name}/{j}")  # str seeds hash the same in every process
                    file = f"{split}/{Path(name).stem}-{j}-{move}.mp4"
                    write_video(tmp / file, render_move(photo, move, rng, frames, size), fps, deterministic=True)
                    manifest[split].append(file)
        shutil.copyfile(photo_dir() / GIF, tmp / "train" / GIF)
        manifest["train"].append(f"train/{GIF}")
        info = {"version": VERSION, "seed": seed, "frames": frames, "size": size, "fps": fps, "files": manifest}
        (tmp / "manifest.json").write_text(json.dumps(info, indent=1))
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep its copy
            if not (final / "manifest.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class SampleClips(Dataset):
    """`length` clips (see `ClipSpec`) of the split's sample videos (`"train"` or held-out `"val"`).

    Training clips draw their video, start, crop and flip from the item seed a `ResumableSampler` passes
    (`ds[(i, item_seed)]`), or from torch's RNG. Held-out items are a pure function of (`seed`, i): the first
    `len(files)` are each file's first clip with a centre crop, later ones random clips of file i % n."""

    def __init__(self, split: str = "train", spec: ClipSpec | None = None, length: int | None = None,
                 seed: int = 0, cache_dir: str | Path | None = None, flip: bool | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split, self.seed = split, seed
        self.spec = spec or ClipSpec(fps=CLIP_FPS)
        self.root = clip_dir(cache_dir=cache_dir)
        train = split == "train"
        self.folder = VideoFolderDataset(self.root / split, self.spec, train=train, strict=True,
                                         flip=train if flip is None else flip)
        self.length = length if length is not None else 10_000 if train else len(self.folder)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int | tuple[int, int]) -> dict | None:
        i, drawn = i if isinstance(i, tuple) else (i, None)
        n = len(self.folder)
        if self.split == "train":
            import torch

            rng = random.Random(drawn if drawn is not None else int(torch.randint(0, 2**62, (1,))))
            file = rng.randrange(n)
            item = self.folder[(file, rng.getrandbits(62))]
        elif i < n:
            item = self.folder[i]  # first clip, centre crop
        else:
            self.folder.train = True  # a random clip of file i % n, from the fixed seed
            try:
                item = self.folder[(i % n, hash((self.seed, i)) % 2**62)]
            finally:
                self.folder.train = False
        return {"video": item["video"], "key": f"sample-clips-{self.split}-{i:06d}"}
