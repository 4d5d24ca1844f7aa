"""Reading any valid image file as RGB, and turning it into a [-1, 1] tensor crop.

Grayscale, palette, RGBA/LA (composited on white), CMYK, 16-bit and float images all become 8-bit RGB; what
was converted is logged once per kind so that a user knows, and a valid file never crashes the loader.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("vistok.data")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_reported: set[str] = set()


def _note(kind: str) -> None:
    if kind not in _reported:
        _reported.add(kind)
        log.info("converted %s images to RGB", kind)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            peak = max(float(arr.max()), 1.0) if arr.max() > 1 else 1.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        _note(f"{mode} (high bit depth)")
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            _note("palette")
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        _note(f"{img.mode} (alpha composited on white)")
        return Image.alpha_composite(background, rgba).convert("RGB")
    _note(mode)
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open, fully decode and convert an image; raises OSError/ValueError naming the file when it is bad."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except Exception as e:  # PIL raises a zoo of types for corrupt data
        raise OSError(f"cannot read image {path}: {e}") from e


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float (3, H, W) in [-1, 1]."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def crop(img: Image.Image, size: int, rng: random.Random | None = None, flip: bool = False) -> Image.Image:
    """A size x size crop at native resolution (random with `rng`, else central); an image smaller than
    `size` is first upscaled. `flip` mirrors horizontally with probability 1/2."""
    w, h = img.size
    if min(w, h) < size:
        return crop(resize_shorter(img, size), size, rng, flip)
    if rng is None:
        left, top = (w - size) // 2, (h - size) // 2
    else:
        left, top = rng.randint(0, w - size), rng.randint(0, h - size)
    img = img.crop((left, top, left + size, top + size))
    if flip and rng is not None and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize (bicubic) so that the shorter side is `size`."""
    w, h = img.size
    scale = size / min(w, h)
    if scale == 1:
        return img
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)


def resize_crop(img: Image.Image, size: int, rng: random.Random | None = None, flip: bool = False) -> Image.Image:
    """ImageNet-style: shorter side to `size`, then a random (train) or central (eval) square crop."""
    return crop(resize_shorter(img, size), size, rng, flip)


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return files
