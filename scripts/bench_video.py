"""Video tokenizer benchmark: encode/decode frames per second of the OmniTokenizer-size model on 17 x 128 x 128
clips (fp32; bf16 autocast only where the CPU has native bf16), and peak memory against clip length, whole clip
vs chunked (causal re-encoding with the previous latent frames as context, `vistok.tokenizers.chunked`).

    python scripts/bench_video.py [--lengths 17,33,65,129] [--chunk 4] [--batch 1] [--json out.json]
    python scripts/bench_video.py --fvd-only [--fvd-model runs/demo_video/export] [--i3d i3d_torchscript.pt]

Peak memory is measured in a fresh process per (length, path, direction): the peak resident set size during
the call (VmHWM, reset just before it) minus the resident size just before it (model and input clip already
in memory), so it is the working memory of the encode or decode itself. Figures depend on the machine.

rFVD pipeline time: `vistok.metrics.evaluate_videos` on the 12 held-out `sample-clips` (17 frames, 16 for FVD)
with the demo video model (`--fvd-model`; omni-tiny with random weights when that export is absent), once
without FVD and once with it; the difference is the FVD part (frames resized to 224, features, Frechet).
Without `--i3d` a stand-in TorchScript of the I3D interface (one strided 3D convolution) replaces the I3D, so
the figure then leaves out the I3D's own compute: give `--i3d` to time the real network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

MODEL = "omnitokenizer"


def build(size: int):
    from vistok.tokenizers import build_tokenizer

    torch.manual_seed(0)
    return build_tokenizer(MODEL, image_size=size).eval()


def native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so that it measures from now on (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_mb()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(frames: int, size: int, chunk: int | None, direction: str) -> None:
    """Runs in its own process: print the working memory (MB) of one encode or decode."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    tok = build(size)
    clip = torch.rand(1, 3, frames, size, size) * 2 - 1
    if direction == "decode":
        ids = tok.encode(clip[:, :, :1])  # cheap: the decode's input only needs the right shape
        ids = ids.repeat(1, tok.token_grid(frames)[0])
        del clip
    before = rss_mb()
    reset = reset_peak()
    start_peak = hwm_mb() if reset else peak_mb()
    with torch.no_grad():
        if direction == "encode":
            tok.encode(clip, chunk=chunk)
        else:
            tok.decode(ids, chunk=chunk)
    peak = hwm_mb() if reset else peak_mb()
    print(json.dumps({"working_mb": max(0.0, peak - max(before, start_peak)), "rss_before_mb": before}))


def measure_memory(frames: int, size: int, chunk: int | None, direction: str) -> float:
    cmd = [sys.executable, __file__, "--child", f"{frames},{size},{chunk or 0},{direction}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(out.stdout.strip().splitlines()[-1])["working_mb"]


def throughput(tok, size: int, batch: int, dtype: str, iters: int) -> tuple[float, float]:
    clip = torch.rand(batch, 3, 17, size, size) * 2 - 1
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    with ctx, torch.no_grad():
        ids = tok.encode(clip)  # warm-up
        tok.decode(ids)
        t0 = time.perf_counter()
        for _ in range(iters):
            ids = tok.encode(clip)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(iters):
            tok.decode(ids)
        dec = time.perf_counter() - t0
    frames = 17 * batch * iters
    return frames / enc, frames / dec


class StandInI3D(torch.nn.Module):
    """(B, 3, 16, 224, 224) -> (B, 400), the interface of the Kinetics-400 I3D TorchScript (not its compute)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, (4, 4, 4), stride=(4, 4, 4))
        self.fc = torch.nn.Linear(8 * 4 * 7 * 7, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.avg_pool3d(x, (1, 8, 8))
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def fvd_pipeline_time(model: str | None, i3d: str | None) -> dict:
    import tempfile
    from pathlib import Path

    from vistok.data.sample_clips import SampleClips
    from vistok.data.videos import ClipSpec
    from vistok.metrics import evaluate_videos
    from vistok.tokenizers import build_tokenizer
    from vistok.tokenizers.tokenizer import Tokenizer

    if model and Path(model).is_dir():
        tok, name = Tokenizer.from_pretrained(model).eval(), model
    else:
        torch.manual_seed(0)
        tok, name = build_tokenizer("omni-tiny").eval(), "omni-tiny (random weights; no demo export found)"
    size = tok.input_spec.height
    clips = SampleClips("val", ClipSpec(frames=17, size=size, fps=8))
    x = torch.stack([clips[i]["video"] for i in range(len(clips))])  # (12, 3, 17, S, S)
    with tempfile.TemporaryDirectory() as tmp:
        net = i3d
        if net is None:
            net = str(Path(tmp) / "stand_in_i3d.pt")
            torch.jit.save(torch.jit.script(StandInI3D().eval()), net)
        times = {}
        for label, path in (("without", None), ("with", net)):
            t = time.perf_counter()
            result = evaluate_videos(lambda v: tok.decode(tok.encode(v)), x, i3d=path, progress=False)
            times[label] = time.perf_counter() - t
    return {"model": name, "clips": len(x), "frames": 17, "size": size, "i3d": i3d or "stand-in",
            "seconds_without_fvd": times["without"], "seconds_with_fvd": times["with"],
            "fvd_seconds": times["with"] - times["without"], "fvd": result.get("fvd")}


def print_fvd(r: dict) -> None:
    print(f"\nrFVD pipeline on {r['clips']} held-out clips ({r['frames']} frames, {r['size']} px), model {r['model']}, "
          f"I3D: {r['i3d']}\n\n| evaluate_videos | seconds |\n| --- | ---: |\n"
          f"| reconstruction + PSNR/SSIM/flicker (no FVD) | {r['seconds_without_fvd']:.2f} |\n"
          f"| the same with FVD | {r['seconds_with_fvd']:.2f} |\n| FVD part | {r['fvd_seconds']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="17,33,65,129")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--chunk", type=int, default=4, help="latent frames per chunk (4 = 16 frames)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--fvd-model", default="runs/demo_video/export", help="model timed in the rFVD pipeline")
    p.add_argument("--i3d", default=None, help="the Kinetics-400 I3D TorchScript (default: a stand-in)")
    p.add_argument("--fvd-only", action="store_true", help="only the rFVD pipeline timing")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.fvd_only:
        print_fvd(fvd_pipeline_time(args.fvd_model, args.i3d))
        return
    if args.child:
        frames, size, chunk, direction = args.child.split(",")
        memory_child(int(frames), int(size), int(chunk) or None, direction)
        return
    threads = torch.get_num_threads()
    os.environ["BENCH_THREADS"] = str(threads)
    tok = build(args.size)
    params = sum(p.numel() for p in tok.parameters()) / 1e6
    bf16 = native_bf16()
    print(f"{MODEL} at {args.size} px: {params:.1f} M parameters, token grid {tok.token_grid(17)} for 17 frames, "
          f"temporal context {tok.encoder.context} latent frames; {threads} threads; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16}", flush=True)
    result = {"model": MODEL, "size": args.size, "params_m": params, "threads": threads, "native_bf16": bf16,
              "throughput": [], "memory": []}
    print("\n| dtype | batch | encode frames/s | decode frames/s |\n| --- | ---: | ---: | ---: |")
    for dtype in ["fp32"] + (["bf16"] if bf16 else []):
        enc, dec = throughput(tok, args.size, args.batch, dtype, args.iters)
        result["throughput"].append({"dtype": dtype, "batch": args.batch, "encode_fps": enc, "decode_fps": dec})
        print(f"| {dtype} | {args.batch} | {enc:.1f} | {dec:.1f} |", flush=True)
    if not bf16:
        print("(bf16 not measured: this CPU has no native bf16, where autocast is several times slower)")
    del tok
    print(f"\nWorking memory (MB) of one clip, whole vs chunked ({args.chunk} latent frames per chunk + context)\n")
    print("| frames | latent frames | encode whole | encode chunked | decode whole | decode chunked |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for frames in [int(x) for x in args.lengths.split(",")]:
        row = {"frames": frames}
        for direction in ("encode", "decode"):
            for name, chunk in (("whole", None), ("chunked", args.chunk)):
                row[f"{direction}_{name}_mb"] = measure_memory(frames, args.size, chunk, direction)
        result["memory"].append(row)
        print(f"| {frames} | {1 + (frames - 1) // 4} | {row['encode_whole_mb']:.0f} | {row['encode_chunked_mb']:.0f} | "
              f"{row['decode_whole_mb']:.0f} | {row['decode_chunked_mb']:.0f} |", flush=True)
    result["fvd_pipeline"] = fvd_pipeline_time(args.fvd_model, args.i3d)
    print_fvd(result["fvd_pipeline"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
