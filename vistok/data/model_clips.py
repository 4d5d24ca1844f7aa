"""A user's file (video or image) as the clip a video model takes: what encode, eval, reconstruct, ladder and
serving feed a video tokenizer.

The model's input spec decides the frames: a causal grid model (frames rule "1+4k") takes the longest valid
prefix of the video (T = 1 + 4k <= the frames read; the few frames past it are dropped and reported), a
fixed-length model (LARP: "17") the first T frames, a shorter video padded by repeating its last frame. An image
is a one-frame video (repeated to the clip length for a fixed-length model). Frames are resized (shorter side)
and centre-cropped to the model's square size exactly as images are, and read at `fps` (None: the file's own
average rate; see `vistok.data.video_io.read_video`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistok.data.images import IMAGE_EXTENSIONS, MAX_PIXELS, open_image_bytes, pil_to_tensor, resize_crop, to_rgb
from vistok.data.video_io import MAX_FRAME_PIXELS, VIDEO_EXTENSIONS, VideoError, read_video
from vistok.input_spec import InputSpec

DEFAULT_FPS = 8.0  # the frame rate written for decoded tokens when none is known (the sample clips' rate)


@dataclass
class ModelClip:
    """One input as a model clip: `video` float (3, T, S, S) in [-1, 1] and what the token json records."""

    video: torch.Tensor
    fps: float
    size: list[int]  # [W, H] of the source frames
    source_frames: int  # frames read from the file (1 for an image), before trimming or padding
    kind: str  # "video" | "image"

    @property
    def frames(self) -> int:
        return int(self.video.shape[1])


def is_video_file(name: str | Path) -> bool:
    return Path(str(name)).suffix.lower() in VIDEO_EXTENSIONS


def clip_length(spec: InputSpec, available: int) -> int:
    """The frames a model takes from a video of `available` frames: the largest valid T <= available, or the
    smallest valid T when the video is shorter (it is padded)."""
    valid = spec.frame_counts(max(available, 1))
    if valid:
        return valid[-1]
    t = available
    while not spec.frames_ok(t):
        t += 1
    return t


def frames_to_clip(frames: np.ndarray, spec: InputSpec, length: int | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (3, T, S, S) float in [-1, 1]: trimmed or padded to the model's clip length (or
    exactly `length` frames), each frame resized and centre-cropped to the model's side."""
    t = length or clip_length(spec, len(frames))
    frames = frames[:t]
    if len(frames) < t:
        frames = np.concatenate([frames, np.repeat(frames[-1:], t - len(frames), axis=0)])
    side = spec.side
    return torch.stack([pil_to_tensor(resize_crop(Image.fromarray(f), side)) for f in frames], dim=1)


def load_model_clip(source: str | Path | bytes, spec: InputSpec, fps: float | None = None,
                    max_frames: int | None = None, name: str | None = None,
                    max_pixels: int | None = MAX_FRAME_PIXELS, length: int | None = None) -> ModelClip:
    """A video or image file (or its bytes) as the clip `spec` takes. `max_frames`: read at most this many frames
    (a long video's prefix); `length`: exactly this many frames (trimmed, or padded with the last; evaluation
    stacks clips of one length). Raises an OSError naming the file when it is neither a readable video nor
    image."""
    if length is not None and not spec.frames_ok(length):
        raise ValueError(f"a clip of {length} frames does not fit the model's frames rule T = {spec.frames}")
    max_frames = length if length is not None else max_frames
    name = name if name is not None else "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)) and Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        return _image_clip(Path(source).read_bytes(), spec, name, max_pixels, length)
    try:
        frames, rate = read_video(source, fps, 0.0, max_frames, name, max_pixels)
    except VideoError as video_error:
        if not isinstance(source, (bytes, bytearray)):
            raise
        try:  # bytes of unknown kind: an image is a one-frame video
            return _image_clip(bytes(source), spec, name, max_pixels, length)
        except OSError:
            raise video_error from None
    if len(frames) == 0:
        raise VideoError(f"cannot read video {name}: no frame decodes")
    h, w = frames.shape[1:3]
    return ModelClip(frames_to_clip(frames, spec, length), float(rate), [int(w), int(h)], len(frames), "video")


def _image_clip(data: bytes, spec: InputSpec, name: str, max_pixels: int | None,
                length: int | None = None) -> ModelClip:
    try:
        img = to_rgb(open_image_bytes(data, max_pixels or MAX_PIXELS))
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read {name}: neither a video nor an image ({e})") from None
    arr = np.asarray(img)[None]  # (1, H, W, 3)
    return ModelClip(frames_to_clip(arr, spec, length), DEFAULT_FPS, [img.width, img.height], 1, "image")


def clip_record(clip: ModelClip, tokens_grid: tuple[int, ...] | None) -> dict[str, Any]:
    """The json fields of a video sample: frames, fps, size, kind (+ token_grid for grid models)."""
    info: dict[str, Any] = {"frames": clip.frames, "source_frames": clip.source_frames, "fps": clip.fps,
                            "size": clip.size, "kind": clip.kind}
    if tokens_grid is not None:
        info["token_grid"] = list(tokens_grid)
    return info
