"""Video reading keeps memory bounded by the model's input, not the file: frames are resized as they are decoded,
a read without a frame bound stops at `DEFAULT_MAX_FRAMES`, and absurd frame rates are refused.

Memory is measured with tracemalloc, which counts numpy's buffers (every decoded frame is one): a
deterministic count of bytes, not a timing. scripts/bench_video_memory.py measures the process's peak RSS.
"""

from __future__ import annotations

import io
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from vistok.data.model_clips import DEFAULT_MAX_FRAMES, ClipTooLarge, load_model_clip
from vistok.data.video_io import read_video, write_video
from vistok.data.videos import ClipSpec, load_clip
from vistok.input_spec import InputSpec

SPEC = InputSpec(3, 16, 16, "1+4k")


def moving(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8: a gradient that shifts each frame (compresses well, decodes to full-size frames)."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x + 3 * t) % 256, (y + t) % 256, (x + y) % 256], -1) for t in range(n)]
    return np.stack(frames).astype(np.uint8)


@pytest.fixture(scope="module")
def big_video(tmp_path_factory):
    """60 frames of 640x480: 55 MB of RGB when every frame is held at full size."""
    return write_video(tmp_path_factory.mktemp("mem") / "big.avi", moving(60, 480, 640), fps=24)


def _peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_model_clip_never_holds_the_full_size_frames(big_video):
    frame = 640 * 480 * 3
    clip, peak = _peak(lambda: load_model_clip(big_video, SPEC, max_frames=60))
    assert clip.frames == 57 and clip.source_frames == 60 and clip.size == [640, 480]
    assert peak < 8 * frame, f"peak {peak / 1e6:.1f} MB: the frames were held at full size (one is {frame / 1e6:.1f})"


def test_a_training_clip_never_holds_the_full_size_frames(big_video):
    frame = 640 * 480 * 3
    clip, peak = _peak(lambda: load_clip(big_video, ClipSpec(frames=40, size=16)))
    assert tuple(clip.shape) == (3, 40, 16, 16)
    assert peak < 8 * frame, f"peak {peak / 1e6:.1f} MB for a 40-frame clip"


def test_the_per_frame_resize_gives_the_same_clip_as_resizing_afterwards(big_video):
    from vistok.data.model_clips import frames_to_clip

    full, _ = read_video(big_video, num_frames=9)
    clip = load_model_clip(big_video, SPEC, max_frames=9)
    assert clip.video.equal(frames_to_clip(full, SPEC))


def test_without_a_bound_a_long_video_is_read_up_to_the_default(tmp_path):
    path = write_video(tmp_path / "long.avi", moving(DEFAULT_MAX_FRAMES + 11, 16, 16), fps=24)
    clip = load_model_clip(path, SPEC)
    assert clip.source_frames == DEFAULT_MAX_FRAMES and clip.truncated
    assert clip.frames == 129  # 1 + 4k <= 129
    short = load_model_clip(path, SPEC, max_frames=500)
    assert short.source_frames == DEFAULT_MAX_FRAMES + 11 and not short.truncated


@pytest.mark.parametrize("fps", [1e-9, 0.0004, 0.05, 241, 1e6])
def test_absurd_frame_rates_are_refused_for_reading_and_writing(tmp_path, fps):
    path = write_video(tmp_path / "a.avi", moving(3, 16, 16), fps=8)
    with pytest.raises(ValueError, match=r"fps must be in \[0.1, 240\]"):
        read_video(path, fps=fps)
    with pytest.raises(ValueError, match=r"fps must be in \[0.1, 240\]"):
        write_video(tmp_path / "b.mp4", moving(3, 16, 16), fps=fps)


def test_write_video_at_the_lowest_accepted_rate_keeps_it(tmp_path):
    from vistok.data.video_io import probe_video

    path = write_video(tmp_path / "slow.mp4", moving(3, 16, 16), fps=0.1)
    assert probe_video(path).fps == pytest.approx(0.1)


def test_an_image_bomb_as_a_video_models_input_is_a_clip_too_large_error(tmp_path):
    """A PNG whose header claims 200 MP: PIL's DecompressionBombError, not an OSError, escaped before."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = (20000).to_bytes(4, "big") + (10000).to_bytes(4, "big")  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # the IHDR chunk's CRC
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    for source in (path, bytes(data)):
        with pytest.raises(ClipTooLarge, match="bomb|too large|exceed"):
            load_model_clip(source, SPEC, max_pixels=None)
        with pytest.raises(OSError):
            load_model_clip(source, SPEC)


@pytest.mark.parametrize("command", ["decode", "reconstruct", "encode", "eval"])
def test_the_cli_refuses_an_absurd_fps_before_any_work(command, capsys):
    from vistok.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--model", "none", "--input", "none", "--output", "none", "--fps", "0.0004"])
    assert exit_.value.code == 2
    assert "--fps must be in [0.1, 240]" in capsys.readouterr().err
