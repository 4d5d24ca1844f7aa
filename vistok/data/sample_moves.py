"""Procedural training clips ("sample-moves"): a fresh camera move over a random crop of a training photo per item.

`sample-clips` trains on 61 fixed files (15 photos x 4 moves + a GIF); a tokenizer trained on them learned those
clips and not pictures in general (see docs/video.md#make-demo-video). The image sample (`vistok.data.sample`) works
because every item is a new random-resized crop; this is its video counterpart: each item takes a
random-resized crop region (0.5%-100% of the area, aspect 3/4-4/3) of a training photo (colour photos drawn 3x,
as the image sample), then renders a random camera move over that region with `render_move` (the pans, zooms and
rolls `sample-clips` renders, at the same speed: a `frames`-frame window of a `CLIP_FRAMES`-frame move) directly
at the clip size, in memory, flipped half the time. Held-out photos are never used: the held-out split is the
real mp4 files of `sample-clips` "val" (`build_video_dataset` reads them for "sample-moves" validation).

Items are a pure function of the item seed a `ResumableSampler` passes (`ds[(i, item_seed)]`: reproducible and
resumable), or draw from torch's RNG for a plain index.
"""

from __future__ import annotations

import math
import random

import torch
from PIL import Image
from torch.utils.data import Dataset

from vistok.data.images import load_rgb
from vistok.data.sample import COLOUR_PHOTOS, COLOUR_WEIGHT, TRAIN_PHOTOS, photo_path
from vistok.data.sample_clips import CLIP_FRAMES, MOVES, render_move
from vistok.data.videos import ClipSpec


def _crop_region(img: Image.Image, rng: random.Random, scale: tuple[float, float]) -> Image.Image:
    """A random region covering `scale` of the area, aspect 3/4-4/3 (log-uniform), at native resolution."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.crop((left, top, left + cw, top + ch))
    return img


class SampleMoves(Dataset):
    """`length` procedural clips (3, spec.frames, spec.size, spec.size) in [-1, 1] of the training photos."""

    def __init__(self, spec: ClipSpec | None = None, length: int = 10_000,
                 scale: tuple[float, float] = (0.005, 1.0), flip: bool = True) -> None:
        self.spec = spec or ClipSpec()
        span = self.spec.span
        if span > CLIP_FRAMES:
            raise ValueError(f"sample-moves: a clip spans {span} frames, more than a move's {CLIP_FRAMES}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"sample-moves: scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.photos = [load_rgb(photo_path(n)) for n in TRAIN_PHOTOS]
        self.weights = [COLOUR_WEIGHT if n in COLOUR_PHOTOS else 1.0 for n in TRAIN_PHOTOS]
        self.length, self.scale, self.flip = length, (float(scale[0]), float(scale[1])), flip

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int | tuple[int, int]) -> dict:
        i, drawn = i if isinstance(i, tuple) else (i, None)
        rng = random.Random(drawn if drawn is not None else int(torch.randint(0, 2**62, (1,))))
        photo = rng.choices(self.photos, self.weights)[0]
        region = _crop_region(photo, rng, self.scale)
        move = rng.choice(MOVES)
        start = rng.randrange(CLIP_FRAMES - self.spec.span + 1)
        frames = render_move(region, move, rng, CLIP_FRAMES, self.spec.size,
                             only=range(start, start + self.spec.span, self.spec.stride))
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)  # (3, T, H, W)
        if self.flip and rng.random() < 0.5:
            video = video.flip(-1)
        return {"video": video.contiguous(), "key": f"sample-moves-train-{i:06d}"}
