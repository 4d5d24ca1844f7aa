"""A user's file (video or image) as the clip a video model takes: what encode, eval, reconstruct, ladder and
serving feed a video tokenizer.

The model's input spec decides the frames: a causal grid model (frames rule "1+4k") takes the longest valid
prefix of the video (T = 1 + 4k <= the frames read; the few frames past it are dropped and reported), a
fixed-length model (LARP: "17") the first T frames, a shorter video padded by repeating its last frame. An image
is a one-frame video (repeated to the clip length for a fixed-length model). Frames are resized (shorter side)
and centre-cropped to the model's square size exactly as images are, and read at `fps` (None: the file's own
average rate; see `vistok.data.video_io.read_video`).

Memory depends on the model's input, not on the file: each frame is resized to the model's side as it is decoded
(one full-size frame at a time), and at most `max_frames` frames are read, `DEFAULT_MAX_FRAMES` when the caller
gives none (a longer video: its first frames; `source_frames` and `truncated` say so). A clip of T frames at side
S holds T x S x S x 3 bytes while it is read, then four times that as floats.
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
DEFAULT_MAX_FRAMES = 129  # frames read from a video when the caller sets no bound (the server's limit too)


class ClipTooLarge(OSError):
    """An input whose frames have more pixels than the limit (read from its header, before decoding)."""


@dataclass
class ModelClip:
    """One input as a model clip: `video` float (3, T, S, S) in [-1, 1] and what the token json records."""

    video: torch.Tensor
    fps: float
    size: list[int]  # [W, H] of the source frames
    source_frames: int  # frames read from the file (1 for an image), before trimming or padding
    kind: str  # "video" | "image"
    truncated: bool = False  # the video goes on past the frames read (`max_frames`)

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
    stacks clips of one length; None for both: at most `DEFAULT_MAX_FRAMES`). Each frame is resized to the
    model's side as it is decoded. Raises an OSError naming the file when it is neither a readable video nor
    image (`ClipTooLarge` when its frames have more than `max_pixels` pixels)."""
    if length is not None and not spec.frames_ok(length):
        raise ValueError(f"a clip of {length} frames does not fit the model's frames rule T = {spec.frames}")
    max_frames = length if length is not None else max_frames or DEFAULT_MAX_FRAMES
    name = name if name is not None else "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)) and Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        return _image_clip(Path(source).read_bytes(), spec, name, max_pixels, length)
    side, source_size = spec.side, []

    def to_side(frame: np.ndarray) -> np.ndarray:  # (H, W, 3) -> (S, S, 3), as soon as the frame is decoded
        if not source_size:
            source_size.extend([int(frame.shape[1]), int(frame.shape[0])])
        return np.asarray(resize_crop(Image.fromarray(frame), side), dtype=np.uint8)

    try:  # one frame past the bound says whether the video goes on
        frames, rate = read_video(source, fps, 0.0, max_frames + 1, name, max_pixels, transform=to_side)
    except VideoError as video_error:
        if not isinstance(source, (bytes, bytearray)):
            raise
        try:  # bytes of unknown kind: an image is a one-frame video
            return _image_clip(bytes(source), spec, name, max_pixels, length)
        except ClipTooLarge:
            raise
        except OSError:
            raise video_error from None
    if len(frames) == 0:
        raise VideoError(f"cannot read video {name}: no frame decodes")
    truncated = len(frames) > max_frames
    frames = frames[:max_frames]
    return ModelClip(frames_to_clip(frames, spec, length), float(rate), source_size, len(frames), "video", truncated)


def _image_clip(data: bytes, spec: InputSpec, name: str, max_pixels: int | None,
                length: int | None = None) -> ModelClip:
    limit = max_pixels or MAX_PIXELS
    try:
        img = to_rgb(open_image_bytes(data, limit))
    except Image.DecompressionBombError as e:  # PIL's own refusal, above twice its MAX_IMAGE_PIXELS
        raise ClipTooLarge(f"cannot read {name}: an image too large to decode ({e})") from None
    except ValueError as e:  # check_pixels: more than `limit` pixels, from the header
        raise ClipTooLarge(f"cannot read {name}: {e}") from None
    except OSError as e:
        raise OSError(f"cannot read {name}: neither a video nor an image ({e})") from None
    arr = np.asarray(img)[None]  # (1, H, W, 3)
    return ModelClip(frames_to_clip(arr, spec, length), DEFAULT_FPS, [img.width, img.height], 1, "image")


def clip_record(clip: ModelClip, tokens_grid: tuple[int, ...] | None) -> dict[str, Any]:
    """The json fields of a video sample: frames, fps, size, kind (+ token_grid for grid models)."""
    info: dict[str, Any] = {"frames": clip.frames, "source_frames": clip.source_frames, "fps": clip.fps,
                            "size": clip.size, "kind": clip.kind}
    if clip.truncated:
        info["truncated"] = True
    if tokens_grid is not None:
        info["token_grid"] = list(tokens_grid)
    return info
