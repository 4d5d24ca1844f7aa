"""The embedded default dataset: random crops of the real photos bundled with scikit-image.

`coffee.png` and `rocket.jpg` are held out for validation; synthetic pictures (logos, charts, text) are left
out. Crops are taken at the photos' native resolution, so a 32 px crop is a small patch of a real scene.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vistok.data.images import crop, load_rgb, pil_to_tensor

TRAIN_PHOTOS = (
    "astronaut.png", "chelsea.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
    "motorcycle_right.png", "retina.jpg", "brick.png", "camera.png", "grass.png", "gravel.png", "moon.png",
    "coins.png", "clock_motion.png", "cell.png",
)
VAL_PHOTOS = ("coffee.png", "rocket.jpg")


def photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


class SamplePhotoCrops(Dataset):
    """`length` crops of `size` px from the train or val photos; crop i is a pure function of (seed, i)."""

    def __init__(self, split: str = "train", size: int = 32, length: int = 10_000, seed: int = 0,
                 flip: bool | None = None, permute_channels: bool = False) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS
        self.names = names
        self.photos = [load_rgb(photo_dir() / n) for n in names]
        self.size, self.length, self.seed = size, length, seed
        self.flip = split == "train" if flip is None else flip
        self.permute_channels = bool(permute_channels)
        # Validation crops are a pure function of (seed, i); training crops draw from torch's RNG, which the
        # DataLoader seeds per worker, so every epoch sees new crops and runs stay reproducible.
        self.fixed = split == "val"

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        seed = hash((self.seed, i)) if self.fixed else int(torch.randint(0, 2**62, (1,)))
        rng = random.Random(seed)
        img = pil_to_tensor(crop(self.photos[rng.randrange(len(self.photos))], self.size, rng, self.flip))
        if self.permute_channels:
            img = img[rng.sample(range(3), 3)]  # (3, H, W) with its colour channels shuffled
        return {"image": img, "key": f"sample-{i:06d}"}
