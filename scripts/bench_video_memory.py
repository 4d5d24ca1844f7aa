"""Peak memory of reading a video as a video model's clip, against the file's frames and resolution.

Each case runs in a fresh Python process that imports vistok, torch and PyAV, records its resident size (the
idle size), reads one file the way a path of vistok does, and reports its peak resident size (VmHWM, Linux) minus
the idle size. Paths:
  serve    the server's encode request for a video model (`vistok.serve.requests.video_encode_job`, run in the API
           process): decode, resize, the base64 job, under the default `Limits` (129 frames, 40 MP per frame)
  cli      `vistok encode` / `reconstruct` / `eval` (`load_model_clip` with no `--max-frames`: the default bound)
  cli-all  the same with `--max-frames` above the file's length (every frame read; memory ~ frames x side^2 x 15 B)
  old      what vistok did before: every frame decoded at full size and stacked, then resized
Test videos are written first with PyAV (H.264, ultrafast) under --work.

    python scripts/bench_video_memory.py --work /path/to/scratch [--side 32] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = [  # (name, width, height, frames, fps)
    ("4k-square-30", 3840, 3840, 30, 30),
    ("4k-30", 3840, 2160, 30, 30),
    ("360p-3000", 640, 360, 3000, 30),
    ("1080p-300", 1920, 1080, 300, 30),
]
QUICK = [("720p-60", 1280, 720, 60, 30), ("360p-300", 640, 360, 300, 30)]


def make_video(path: Path, width: int, height: int, frames: int, fps: int) -> Path:
    """A moving gradient with noise (so frames differ and do not compress to nothing), H.264 ultrafast."""
    import av
    import numpy as np

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = ((x + y) // 4 % 256).astype(np.uint8)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        noise = rng.integers(0, 32, (height, width), dtype=np.uint8)
        for t in range(frames):
            g = np.roll(base, 7 * t, axis=1) + noise
            frame = av.VideoFrame.from_ndarray(np.stack([g, np.roll(g, t, 0), 255 - g], -1), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    tmp.rename(path)
    return path


CHILD = r"""
import json, sys, time
from pathlib import Path

def status_kb(field):  # VmRSS: resident now; VmHWM: its peak since exec (ru_maxrss keeps the parent's peak)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

import av, numpy, torch
from vistok.data.model_clips import load_model_clip, frames_to_clip
from vistok.data.video_io import read_video
from vistok.input_spec import InputSpec
from vistok.serve.facts import model_facts
from vistok.serve.limits import Limits
from vistok.serve.requests import video_encode_job
from vistok.tokenizers import build_tokenizer

mode, path, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
facts = model_facts(build_tokenizer("omni-tiny"))
spec = InputSpec(3, side, side, "1+4k")
data = Path(path).read_bytes() if mode == "serve" else None
idle = status_kb("VmRSS")
start = time.perf_counter()
if mode == "serve":
    job = video_encode_job(data, None, None, facts, Limits())
    frames = job["frames"]
elif mode == "cli":
    frames = load_model_clip(path, spec).frames
elif mode == "cli-all":
    frames = load_model_clip(path, spec, max_frames=10**6).frames
else:  # old
    full, _ = read_video(path, max_pixels=None)
    frames = frames_to_clip(full, spec).shape[1]
peak = status_kb("VmHWM")
print(json.dumps({"idle_mb": idle / 1024, "peak_over_idle_mb": (peak - idle) / 1024, "frames": int(frames),
                  "seconds": time.perf_counter() - start}))
"""


def run_case(mode: str, path: Path, side: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(side)], capture_output=True, text=True,
                         timeout=900)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True, help="scratch directory for the test videos")
    p.add_argument("--side", type=int, default=32, help="the model's side for the cli paths (serve: omni-tiny's)")
    p.add_argument("--quick", action="store_true", help="two small files only")
    p.add_argument("--modes", default="serve,cli,cli-all,old")
    p.add_argument("--old-max-mb", type=float, default=2500,
                   help="skip the 'old' path when the file's frames would exceed this at full size")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| file | frames | resolution | path | frames read | peak over idle (MB) | idle (MB) | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, w, h, n, fps in QUICK if a.quick else CASES:
        t0 = time.perf_counter()
        path = make_video(work / f"{name}.mp4", w, h, n, fps)
        made = time.perf_counter() - t0
        for mode in a.modes.split(","):
            if mode == "old" and w * h * 3 * n * 2 / 2**20 > a.old_max_mb:
                print(f"| {name} | {n} | {w}x{h} | old | skipped: ~{w * h * 3 * n * 2 / 2**30:.1f} GB | | | |")
                continue
            r = run_case(mode, path, a.side)
            if "error" in r:
                print(f"| {name} | {n} | {w}x{h} | {mode} | error: {r['error']} | | | |")
                continue
            print(f"| {name} | {n} | {w}x{h} | {mode} | {r['frames']} | {r['peak_over_idle_mb']:.0f} | "
                  f"{r['idle_mb']:.0f} | {r['seconds']:.1f} |", flush=True)
        print(f"(made {path.name}, {path.stat().st_size / 1e6:.1f} MB, in {made:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
