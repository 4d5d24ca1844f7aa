"""The embedded default dataset: real photos bundled with scikit-image (and one with matplotlib).

Training draws ImageNet-style random-resized crops from 15 photos: a crop covers 0.5% to 100% of the photo
(from a native-resolution patch up to the whole picture), with aspect jitter (3/4 to 4/3) and horizontal
flips, resized to `size` px. The 7 colour photos are drawn 3x as often as the 8 grayscale ones, so colour is
learned. Two held-out sets, never trained on:
- `"val"`: native-resolution `size` px patches of coffee.png and rocket.jpg (what the first demo measured);
- `"photos"`: whole held-out pictures as users feed them, resized to `size` px: each of coffee.png, rocket.jpg
  (scikit-image) and grace_hopper.jpg (matplotlib) centre-cropped whole, then views covering 25%-100% of it.
Held-out samples are a pure function of (seed, i). Training crops draw from the item seed that
`vistok.data.resumable.ResumableSampler` passes with each index (`ds[(i, item_seed)]`: reproducible and
resumable), or from torch's RNG for a plain index.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from vistok.data.images import crop, load_rgb, pil_to_tensor

COLOUR_PHOTOS = ("astronaut.png", "chelsea.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
                 "motorcycle_right.png", "retina.jpg")
GRAY_PHOTOS = ("brick.png", "camera.png", "grass.png", "gravel.png", "moon.png", "coins.png",
               "clock_motion.png", "cell.png")
TRAIN_PHOTOS = COLOUR_PHOTOS + GRAY_PHOTOS
COLOUR_WEIGHT = 3.0
VAL_PHOTOS = ("coffee.png", "rocket.jpg")
HELD_OUT_PHOTOS = VAL_PHOTOS + ("grace_hopper.jpg",)
SPLITS = ("train", "val", "photos")


def photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def photo_path(name: str) -> Path:
    if name == "grace_hopper.jpg":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    return photo_dir() / name


def random_resized_crop(img: Image.Image, size: int, rng: random.Random, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = False) -> Image.Image:
    """A crop covering `scale` of the area with aspect in `ratio` (log-uniform), resized to size x size
    (bicubic after a box reduction, so large crops are anti-aliased); falls back to the central square."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        left, top = (w - cw) // 2, (h - ch) // 2
    out = img.resize((size, size), Image.BICUBIC, box=(left, top, left + cw, top + ch), reducing_gap=3.0)
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out


def centre_square(img: Image.Image, size: int) -> Image.Image:
    """The whole picture as a user feeds it: the central square, resized to size x size."""
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.resize((size, size), Image.BICUBIC, box=box, reducing_gap=3.0)


class SamplePhotoCrops(Dataset):
    """`length` images of `size` px from the split's photos (see the module docstring)."""

    def __init__(self, split: str = "train", size: int = 32, length: int = 10_000, seed: int = 0,
                 flip: bool | None = None, scale: tuple[float, float] = (0.005, 1.0)) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS if split == "val" else HELD_OUT_PHOTOS
        self.photos = [load_rgb(photo_path(n)) for n in self.names]
        self.weights = [COLOUR_WEIGHT if n in COLOUR_PHOTOS else 1.0 for n in self.names]
        self.size, self.length, self.seed = size, length, seed
        self.flip = split == "train" if flip is None else flip
        self.scale = (float(scale[0]), float(scale[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        # Held-out samples are a pure function of (seed, i); training crops draw from the item seed given with
        # the index (ResumableSampler: a function of seed, epoch and index) or else from torch's RNG.
        self.fixed = split != "train"

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        i, drawn = i if isinstance(i, tuple) else (i, None)  # (index, item seed) from a ResumableSampler
        if self.fixed:
            seed = hash((self.seed, i))
        else:
            seed = drawn if drawn is not None else int(torch.randint(0, 2**62, (1,)))
        rng = random.Random(seed)
        if self.split == "train":
            photo = rng.choices(self.photos, self.weights)[0]
            img = random_resized_crop(photo, self.size, rng, self.scale, flip=self.flip)
        elif self.split == "val":
            img = crop(self.photos[rng.randrange(len(self.photos))], self.size, rng, self.flip)
        else:
            photo = self.photos[i % len(self.photos)]
            if i < len(self.photos):
                img = centre_square(photo, self.size)
            else:
                img = random_resized_crop(photo, self.size, rng, (0.25, 1.0), flip=self.flip)
        return {"image": pil_to_tensor(img), "key": f"sample-{self.split}-{i:06d}"}
