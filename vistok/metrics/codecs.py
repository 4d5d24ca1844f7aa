"""JPEG and WebP baselines at equal bytes: Pillow encodes each image at a sweep of quality settings; the byte
count is the length of the real encoded file (headers included); the decoded image is scored with the same
PSNR/SSIM as the tokenizer.

Pillow settings: JPEG `quality=q` (libjpeg defaults: 4:2:0 chroma subsampling, baseline, no optimize);
WebP `quality=q, method=6` (lossy, best compression effort).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from vistok.data.images import pil_to_tensor, tensor_to_uint8
from vistok.metrics.pixel import RunningMean, colour_error, psnr_ssim

CODECS: dict[str, dict] = {"jpeg": {"format": "JPEG"}, "webp": {"format": "WEBP", "method": 6}}
QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (1, 5, 10, 20, 30, 50, 75, 90),
    "webp": (0, 5, 10, 20, 30, 50, 75, 90),
}


def check_codecs(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in CODECS]
    if bad:
        raise ValueError(f"--baselines: unknown codec(s) {bad}; known: {', '.join(CODECS)}")
    return names


def encode_image(image: np.ndarray, codec: str, quality: int) -> bytes:
    """(H, W, 3) uint8 -> the bytes of a `codec` file at `quality` (what `Image.save` writes to disk)."""
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, quality=quality, **CODECS[codec])
    return buf.getvalue()


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded bytes -> (3, H, W) float in [-1, 1]."""
    with Image.open(io.BytesIO(data)) as img:
        return pil_to_tensor(img.convert("RGB"))


class CodecSweep:
    """Streaming bytes / PSNR / SSIM per quality setting of one codec."""

    def __init__(self, codec: str, qualities: tuple[int, ...] | None = None, keep: int = 0) -> None:
        check_codecs([codec])
        self.codec, self.qualities = codec, tuple(qualities or QUALITIES[codec])
        self.bytes = {q: 0 for q in self.qualities}
        self.psnr = {q: RunningMean() for q in self.qualities}
        self.ssim = {q: RunningMean() for q in self.qualities}
        self.colour = {q: RunningMean() for q in self.qualities}
        self.count, self.pixels, self.keep = 0, 0, keep
        self.kept: dict[int, list[torch.Tensor]] = {q: [] for q in self.qualities}  # first `keep` decodes

    def update(self, images: torch.Tensor) -> None:
        """images (B, 3, H, W) in [-1, 1]."""
        arrays = [tensor_to_uint8(x) for x in images]
        for q in self.qualities:
            data = [encode_image(a, self.codec, q) for a in arrays]
            decoded = torch.stack([decode_image(d) for d in data])
            self.bytes[q] += sum(len(d) for d in data)
            psnr, ssim = psnr_ssim(images.cpu(), decoded)
            self.psnr[q].update(psnr)
            self.ssim[q].update(ssim)
            self.colour[q].update(colour_error(images.cpu(), decoded))
            room = self.keep - sum(x.shape[0] for x in self.kept[q])
            if room > 0:
                self.kept[q].append(decoded[:room])
        self.count += images.shape[0]
        self.pixels = images.shape[-1] * images.shape[-2]

    def rows(self) -> list[dict]:
        """One row per quality: mean bytes per image, bits per pixel, PSNR, SSIM."""
        out = []
        for q in self.qualities:
            mean_bytes = self.bytes[q] / max(self.count, 1)
            out.append({"method": self.codec, "quality": q, "bytes": mean_bytes, "total_bytes": self.bytes[q],
                        "bpp": 8 * mean_bytes / max(self.pixels, 1), "psnr": self.psnr[q].compute(),
                        "ssim": self.ssim[q].compute(), "colour_error": self.colour[q].compute()})
        return out
