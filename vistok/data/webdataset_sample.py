"""One webdataset sample -> an RGB image and its label: the decoder shared by training / eval data
(`vistok.data.folder.webdataset_images`) and `vistok encode` (`vistok.shards.inputs`).

A sample is webdataset's raw dict {"__key__", ext: bytes}. The image is the first member among
`WDS_IMAGE_KEYS`, decoded with the same pixel limit as files (`open_image_bytes`); the label is the integer in
`cls` (else `label`), when present and an integer. A sample without a readable image raises `ValueError`
with a reason that names the member; callers decide whether to skip (and report) or stop.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from vistok.data.images import MAX_PIXELS, open_image_bytes

WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp")
WDS_LABEL_KEYS = ("cls", "label")


def sample_label(sample: dict[str, Any]) -> int | None:
    """The integer in the sample's `cls` (else `label`) member; None when absent or not an integer."""
    for k in WDS_LABEL_KEYS:
        if k in sample:
            value = sample[k]
            try:
                return int(value.decode().strip() if isinstance(value, (bytes, bytearray)) else value)
            except (ValueError, TypeError, UnicodeDecodeError):
                return None
    return None


def decode_sample(sample: dict[str, Any], max_pixels: int | None = MAX_PIXELS) -> tuple[Image.Image, int | None]:
    """(RGB image, label or None) of a raw webdataset sample; ValueError naming the member when it has no
    readable image."""
    key = sample.get("__key__")
    ext = next((k for k in WDS_IMAGE_KEYS if k in sample), None)
    if ext is None:
        raise ValueError(f"no image ({'/'.join(WDS_IMAGE_KEYS)}) in sample {key}")
    try:
        img = open_image_bytes(sample[ext], max_pixels)
    except Exception as e:
        raise ValueError(f"cannot read image {key}.{ext}: {e}") from e
    return img, sample_label(sample)
