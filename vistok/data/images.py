"""Reading any valid image file as RGB, and turning it into a [-1, 1] tensor crop.

Grayscale, palette, RGBA/LA (composited on white), CMYK, 16-bit and float images all become 8-bit RGB; what
was converted is logged once per kind so that a user knows, and a valid file never crashes the loader.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("vistok.data")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_PIXELS = 64_000_000  # default cap on decoded pixels per image (8000 x 8000); None: no cap
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


def load_rgb(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Open, fully decode and convert an image; raises OSError naming the file when it is bad or, from its
    header and before decoding, when it has more than `max_pixels` pixels (None: no limit)."""
    try:
        with Image.open(path) as img:
            check_pixels(img, max_pixels)
            img.load()
            return to_rgb(img)
    except Exception as e:  # PIL raises a zoo of types for corrupt data
        raise OSError(f"cannot read image {path}: {e}") from e


def check_pixels(img: Image.Image, max_pixels: int | None = MAX_PIXELS) -> None:
    """Refuse an opened (not yet decoded) image larger than `max_pixels`: a small compressed file can decode
    to gigabytes."""
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise ValueError(f"{w}x{h} pixels ({w * h / 1e6:.1f} megapixels) exceed the limit of "
                         f"{max_pixels / 1e6:g} megapixels (raise it with max_pixels / --max-pixels)")


def open_image_bytes(data: bytes, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode an encoded image held in memory (a webdataset member) to RGB, with the same pixel limit."""
    with Image.open(io.BytesIO(data)) as img:
        check_pixels(img, max_pixels)
        img.load()
        return to_rgb(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image (or (H, W, 3) uint8 array) -> float (3, H, W) in [-1, 1]."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] (any shape) -> uint8 tensor of the same shape and device: the one conversion vistok
    uses wherever pixels become 8-bit (saved PNGs, FID input, PSNR/SSIM), the inverse of `pil_to_tensor`."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 numpy array (for PIL)."""
    return to_uint8(x).permute(1, 2, 0).cpu().numpy()


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


@dataclass
class ImageListing:
    """What `scan_images` found: the image files, and every entry it could not read with the reason."""

    root: Path
    files: list[Path]
    skipped: list[tuple[str, str]]  # (path relative to root, reason)
    ignored: int = 0  # regular files without an image extension (not inputs)


def scan_images(root: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> ImageListing:
    """Every image file under `root` (recursive, sorted by relative path); `extensions` (lower case) says
    which files count (videos are listed with `vistok.data.video_io.VIDEO_EXTENSIONS`).

    Directory symlinks are followed, each real directory is listed once (a second way into it, a symlink
    loop included, is reported instead of followed); real subdirectories are listed before symlinked ones,
    so a symlink never hides a real directory. Unreadable directories, broken or looping symlinks and
    entries that are neither directories nor regular files (FIFOs, sockets, devices) are reported in
    `skipped` with the reason; regular files without an image extension are only counted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{'image' if extensions == IMAGE_EXTENSIONS else 'data'} folder {root} does not "
                                "exist")
    listing = ImageListing(root, [], [])
    st = root.stat()
    seen: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
    links: list[tuple[Path, str, tuple[int, int]]] = []

    def walk(folder: Path, rel: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            listing.skipped.append((rel, f"cannot list directory ({e.strerror or e})"))
            return
        for entry in entries:
            r = f"{rel}/{entry.name}" if rel != "." else entry.name
            path = folder / entry.name
            try:
                info = path.stat()  # follows symlinks
            except OSError as e:
                if entry.is_symlink():
                    reason = ("symlink loop" if e.errno == errno.ELOOP
                              else f"broken symlink (to {os.readlink(path)})")
                else:
                    reason = f"cannot stat ({e.strerror or e})"
                listing.skipped.append((r, reason))
                continue
            if stat.S_ISDIR(info.st_mode):
                ident = (info.st_dev, info.st_ino)
                if entry.is_symlink():
                    links.append((path, r, ident))
                elif ident not in seen:
                    seen[ident] = r
                    walk(path, r)
            elif stat.S_ISREG(info.st_mode):
                if path.suffix.lower() in extensions:
                    listing.files.append(path)
                else:
                    listing.ignored += 1
            else:
                listing.skipped.append((r, f"not a regular file ({_file_kind(info.st_mode)})"))

    walk(root, ".")
    while links:  # symlinked directories, once each, after every real one
        path, r, ident = links.pop(0)
        if ident in seen:
            listing.skipped.append((r, f"directory symlink to {seen[ident]!r}, which is already listed (not "
                                       "followed again: a loop or a second path to the same folder)"))
            continue
        seen[ident] = r
        walk(path, r)
    listing.files.sort(key=lambda p: str(p.relative_to(root)))
    listing.skipped.sort()
    return listing


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def no_images_error(listing: ImageListing) -> FileNotFoundError:
    msg = f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {listing.root}"
    if listing.skipped:
        first = "; ".join(f"{p}: {why}" for p, why in listing.skipped[:3])
        msg += f" ({len(listing.skipped)} entries could not be read: {first})"
    return FileNotFoundError(msg)


def list_images(root: str | Path) -> list[Path]:
    """The image files of `scan_images`; every entry that cannot be read is logged as a warning."""
    listing = scan_images(root)
    for rel, reason in listing.skipped:
        log.warning("skipping %s: %s", Path(root) / rel, reason)
    if not listing.files:
        raise no_images_error(listing)
    return listing.files


def load_images(images: Any, size: int, max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
    """Images for `Tokenizer.encode`, prepared exactly as the CLI prepares them: float (B, 3, size, size) in
    [-1, 1] (`x_uint8 / 127.5 - 1`).

    `images`: one item or a list of them; an item is a file path (str or Path), a PIL image (any mode), or a
    uint8 numpy array (H, W), (H, W, 3) or (H, W, 4). Each is converted to RGB (`to_rgb`), its shorter side
    resized to `size` (bicubic) and centre-cropped to a square (`resize_crop`). A file that cannot be read
    raises an OSError naming it."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer (the tokenizer's image_size), got {size!r}")
    single = isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)
                                                              and images.dtype == np.uint8)
    items = [images] if single else list(images)
    if not items:
        raise ValueError("load_images got no images")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            img = load_rgb(item, max_pixels)
        elif isinstance(item, Image.Image):
            img = to_rgb(item)
        elif isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (3, 4)):
                raise ValueError(f"image {i}: numpy arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4), got "
                                 f"{item.dtype} of shape {item.shape}"
                                 + (" (float pixels: convert with (x * 255).round().astype(np.uint8) for [0, 1])"
                                    if item.dtype.kind == "f" else ""))
            img = to_rgb(Image.fromarray(np.ascontiguousarray(item)))
        else:
            raise ValueError(f"image {i}: expected a path, a PIL image or a uint8 numpy array, got "
                             f"{type(item).__name__}")
        out.append(pil_to_tensor(resize_crop(img, size)))
    return torch.stack(out)  # (B, 3, size, size)


AUGMENTS = ("none", "flip", "tencrop")
TENCROP_SCALE = 1.1  # LlamaGen's crop_range: the ten crops come from a centre square 10% larger than `size`


def augmented_views(img: Image.Image, size: int, augment: str = "none") -> list[tuple[str | None, Image.Image]]:
    """(view name, size x size crop) of an image, as the pretokenization scripts of LlamaGen and TiTok offer:
    "none": the centre crop (`resize_crop`), no name; "flip": "center" and its mirror "flip"; "tencrop": the
    shorter side resized to round(1.1 * size) and centre-cropped, then its four corners ("tl", "tr", "bl",
    "br") and centre ("center") at `size`, each also mirrored ("tl_flip", ...), as torchvision's TenCrop."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    if augment == "none":
        return [(None, resize_crop(img, size))]
    if augment == "flip":
        centre = resize_crop(img, size)
        return [("center", centre), ("flip", centre.transpose(Image.FLIP_LEFT_RIGHT))]
    big = max(size, round(size * TENCROP_SCALE))
    square = resize_crop(img, big)
    d = big - size
    boxes = {"tl": (0, 0), "tr": (d, 0), "bl": (0, d), "br": (d, d), "center": (d // 2, d // 2)}
    views: list[tuple[str | None, Image.Image]] = []
    for name, (left, top) in boxes.items():
        view = square.crop((left, top, left + size, top + size))
        views += [(name, view), (f"{name}_flip", view.transpose(Image.FLIP_LEFT_RIGHT))]
    return views
