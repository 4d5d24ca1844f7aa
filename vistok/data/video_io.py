"""Reading and writing video files with PyAV (its wheels bundle FFmpeg: no ffmpeg binary is needed).

Reading resamples every video to a fixed frame rate: the frame shown at target time `start + k / fps` is the
decoded frame whose timestamp is nearest (ties go to the earlier one), so a variable-frame-rate file, a GIF
with per-frame delays and a 30 fps file all give frames at the configured rate (`fps=None`: the stream's own
average rate). Frames are 8-bit RGB; an alpha channel (GIF, some WebM) is composited on white, as images are.

Everything that can go wrong with a file (it does not open, has no video stream, is too large, a packet fails
to decode, nothing decodes) raises `VideoError`, an `OSError` whose message names the file and the reason:
datasets skip and report it, or stop under `strict`. A file that ends early (truncated after its header)
simply yields fewer frames; the caller decides whether to pad or skip a short clip.

Memory: `read_video(..., transform=f)` applies `f` to each frame as it is emitted (the model loaders resize to the
model's side there), so only one full-size frame is held at a time; the decoder's own frame threads are capped
so that their buffers stay within `DECODER_BUFFER_BYTES` whatever the resolution. Frame rates outside
[`MIN_FPS`, `MAX_FPS`] are refused for reading and writing (`check_fps`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".webm", ".gif", ".avi", ".mkv", ".mov", ".m4v")
MAX_FRAME_PIXELS = 16_000_000  # per frame (4000 x 4000); a larger stream is refused from its header
# Encoder and pixel format per container: widely playable codecs, all inside PyAV's bundled FFmpeg.
WRITE_CODECS = {".mp4": ("libx264", "yuv420p"), ".m4v": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"),
                ".mkv": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p"), ".avi": ("mpeg4", "yuv420p"),
                ".gif": ("gif", "rgb8")}
_EPS = 1e-6
MIN_FPS, MAX_FPS = 0.1, 240.0  # frame rates accepted for reading and writing (H.264 time bases need > 0.001)
DECODER_BUFFER_BYTES = 256 << 20  # budget for the frames FFmpeg's decoder threads hold at once

Source = str | Path | bytes


class VideoError(OSError):
    """A video that cannot be read; the message names it and says why."""


@dataclass
class VideoInfo:
    """What the container header says (estimates: a truncated file or a lying header decodes to less)."""

    width: int
    height: int
    fps: float  # the stream's average frame rate
    duration: float | None  # seconds, None when the header does not say
    frames: int | None  # frames in the header, None when it does not say
    codec: str

    def count(self, fps: float | None = None) -> int | None:
        """How many frames a read at `fps` (None: the native rate) should give, from the header."""
        rate = fps or self.fps
        if self.duration is not None and self.duration > 0:
            return max(1, math.ceil(self.duration * rate - _EPS))
        if self.frames and self.fps > 0:
            return max(1, math.ceil(self.frames / self.fps * rate - _EPS))
        return None


def check_fps(fps: float, what: str = "fps") -> float:
    """`fps` as a float when it lies in [MIN_FPS, MAX_FPS], else a ValueError that says the range."""
    try:
        value = float(fps)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be a number of frames per second, got {fps!r}") from None
    if not MIN_FPS <= value <= MAX_FPS:
        raise ValueError(f"{what} must be in [{MIN_FPS:g}, {MAX_FPS:g}] frames per second, got {fps!r}")
    return value


def _name(source: Source, name: str | None) -> str:
    return name if name is not None else "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def _open(source: Source, name: str):
    import av

    try:
        return av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    except Exception as e:  # av raises its own error zoo (InvalidDataError, FileNotFoundError, ...)
        raise VideoError(f"cannot open video {name}: {_reason(e)}") from e


def _reason(e: Exception) -> str:
    return str(e).strip() or type(e).__name__


def _stream(container, name: str, max_pixels: int | None):
    if not container.streams.video:
        raise VideoError(f"cannot read video {name}: no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if max_pixels is not None and w * h > max_pixels:
        raise VideoError(f"cannot read video {name}: {w}x{h} frames exceed the limit of {max_pixels / 1e6:g} "
                         "megapixels per frame")
    # Frame threading holds about one frame per thread: cap the threads so a 4K stream cannot hold gigabytes.
    frame_bytes = max(1, w * h * 3 // 2)  # a yuv420p frame
    threads = max(1, min(os.cpu_count() or 1, DECODER_BUFFER_BYTES // frame_bytes - 1, 16))
    stream.codec_context.thread_count = threads
    stream.thread_type = "AUTO" if threads > 1 else "SLICE"
    return stream


def _native_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 25.0  # FFmpeg's own default when a stream states no rate


def _info(container, stream) -> VideoInfo:
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    return VideoInfo(stream.codec_context.width, stream.codec_context.height, _native_fps(stream),
                     duration, stream.frames or None, stream.codec_context.name)


def probe_video(source: Source, name: str | None = None, max_pixels: int | None = MAX_FRAME_PIXELS) -> VideoInfo:
    """The header of a video file (or its bytes); `VideoError` naming it when it cannot be opened."""
    name = _name(source, name)
    with _open(source, name) as container:
        return _info(container, _stream(container, name, max_pixels))


def frame_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame -> (H, W, 3) uint8 RGB; alpha composited on white."""
    if frame.format.name in ("rgba", "bgra", "argb", "abgr", "yuva420p", "pal8", "ya8"):
        rgba = frame.to_ndarray(format="rgba").astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        return (rgba[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return frame.to_ndarray(format="rgb24")


def _timed_frames(container, stream, start: float, name: str) -> Iterator[tuple[float, float, object]]:
    """(time from the stream's start, duration, frame) of every decoded frame, from a keyframe at or before
    `start` on (a seek when start > 0 and the file allows it, else from the beginning)."""
    tb = stream.time_base or Fraction(1, 1000)
    t0 = float(stream.start_time * tb) if stream.start_time is not None else None
    native = _native_fps(stream)
    if start > 0 and t0 is not None:
        try:  # to the keyframe at or before `start`; decoding from there drops nothing the clip needs
            container.seek(int((start + t0) / tb), stream=stream, backward=True, any_frame=False)
        except Exception:
            container.seek(0, stream=stream)
    index = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                t = float(frame.pts * tb)
                if t0 is None:
                    t0 = t
                t -= t0
            else:  # no timestamps: the native rate
                t = index / native
            dur = float(frame.duration * tb) if getattr(frame, "duration", None) else 1.0 / native
            index += 1
            yield t, dur, frame
    except Exception as e:
        raise VideoError(f"cannot decode video {name}: {_reason(e)} (after {index} frames)") from e


def read_video(source: Source, fps: float | None = None, start: float = 0.0, num_frames: int | None = None,
               name: str | None = None, max_pixels: int | None = MAX_FRAME_PIXELS,
               transform: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """Frames at `fps` (None: the native rate) from time `start` on: ((N, H, W, 3) uint8, fps).

    N is `num_frames`, or fewer when the video ends first (all of it when `num_frames` is None: the caller bounds
    it). `transform` maps each (H, W, 3) frame as soon as it is decoded (e.g. to the model's size; then H, W are
    its output's), so memory is N small frames plus one full-size frame. Raises `VideoError` naming the file when
    it cannot be opened or decoded, or when not a single frame decodes."""
    name = _name(source, name)
    if fps is not None:
        fps = check_fps(fps)
    with _open(source, name) as container:
        stream = _stream(container, name, max_pixels)
        rate = float(fps) if fps else _native_fps(stream)
        out: list[np.ndarray] = []
        k = 0  # next target: start + k / rate
        prev = None  # (time, duration, frame, rgb or None)

        def emit_until(limit: float) -> None:  # every target before `limit` shows the previous frame
            nonlocal k, prev
            while (num_frames is None or k < num_frames) and start + k / rate < limit:
                if prev[3] is None:
                    rgb = frame_rgb(prev[2])
                    prev = (*prev[:3], transform(rgb) if transform is not None else rgb)
                out.append(prev[3])
                k += 1

        decoded = 0
        for t, dur, frame in _timed_frames(container, stream, start, name):
            decoded += 1
            if prev is not None:
                emit_until((prev[0] + t) / 2 + _EPS)  # targets nearer the previous frame (a tie: it too)
                if num_frames is not None and k >= num_frames:
                    break
            prev = (t, dur, frame, None)
        if prev is not None and (num_frames is None or k < num_frames):
            emit_until(prev[0] + max(prev[1], 2 * _EPS) - _EPS)  # the last frame is shown for its duration
        if not decoded:
            raise VideoError(f"cannot read video {name}: no frame decodes (empty or truncated file)")
    if not out:  # `start` lies past the end
        return np.zeros((0, 1, 1, 3), np.uint8), rate
    return np.stack(out), rate


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float = 8.0,
                times: Sequence[float] | None = None, crf: int = 18, deterministic: bool = False) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames to `path`; the codec follows the extension (`WRITE_CODECS`:
    H.264 for .mp4/.mkv/.mov, VP9 for .webm, MPEG-4 part 2 for .avi, GIF). `times` (seconds, increasing)
    gives each frame its own timestamp (a variable frame rate); else frames are 1 / fps apart. Odd sizes are
    padded by one edge row / column for the 4:2:0 codecs. Encoding is single-threaded. `deterministic`: the
    same frames always give the same bytes; x264's SIMD code paths gave different bytes (and decoded pixels)
    from run to run on the same machine, so this runs its plain C code (~10x slower; fine for small clips)."""
    import av

    path = Path(path)
    fps = check_fps(fps)
    suffix = path.suffix.lower()
    if suffix not in WRITE_CODECS:
        raise ValueError(f"cannot write {path}: extension must be one of {', '.join(WRITE_CODECS)}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    if times is not None and len(times) != len(frames):
        raise ValueError(f"got {len(times)} times for {len(frames)} frames")
    codec, pix_fmt = WRITE_CODECS[suffix]
    if pix_fmt == "yuv420p" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        options = ({"crf": str(crf), "preset": "medium", **({"x264-params": "asm=0"} if deterministic else {})}
                   if codec == "libx264"
                   else {"crf": str(crf + 12), "b:v": "0", "row-mt": "0", "cpu-used": "4"} if codec == "libvpx-vp9"
                   else {})
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.thread_count = 1
        time_base = Fraction(1, 1000) if times is not None else None
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            if time_base is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
