"""Peak memory and frames/s of OmniTokenizer, the official code against vistok's import of the same weights.

Needs the official repository (`--official-repo`) and, beside vistok, the packages its model code imports
(`pip install beartype timm==1.0.9` in a throwaway copy of the environment). The paper-size network (width 512,
encoder ttww, decoder tttt, RoPE) is built by the official code with random weights, its state dict mapped into
vistok's `OmniEncoder/OmniDecoder(architecture="official")`, and each (implementation, frames, size) is run in its
own process: encode + decode of one clip under no_grad, fp32, on the CPU (or `--device cuda`). Memory: the peak
resident set (CPU, Linux: reset through /proc/self/clear_refs before the pass) or peak allocated (CUDA) during
the pass, above what the process held before it. `--warmup N` runs N untimed passes first, for the speed of a
warm pass (the memory figure then leaves out whatever the allocator kept from them: use the cold one for memory).

    python scripts/bench_official_video.py --official-repo PATH --frames 17 129 --sizes 128

`--interleave N` times speed only, with less noise: both implementations in one process on the same weights and
the same clip, encode and decode timed apart, the two alternating N times after a warm pass; it prints the minimum
and median seconds of each and the vistok / official ratio of the minima (`--threads` sets torch's threads).

    python scripts/bench_official_video.py --official-repo PATH --frames 17 --sizes 128 256 --interleave 6 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _official(repo: Path, size: int):
    from make_omni_fixtures import build
    from official_env import namespace_package, stub_packages

    stub_packages("torchvision", "pytorch_lightning", "lightning", "fairscale", "imageio")
    sys.path.insert(0, str(repo))
    namespace_package("OmniTokenizer", repo / "OmniTokenizer")
    import OmniTokenizer.omnitokenizer as omni

    args = argparse.Namespace(
        resolution=size, image_channels=3, patch_embed="linear", patch_size=8, temporal_patch_size=4,
        temporal_depth=4, embedding_dim=512, dim_head=64, heads=8, enc_block="ttww", dec_block="tttt",
        twod_window_size=8, causal_in_temporal_transformer=True, causal_in_peg=True, n_codes=8192, codebook_dim=8,
        l2_code=True, use_vae=False, ff_mult=4.0, norm_type="batch", spatial_pos="rope", sequence_length=17)
    torch.manual_seed(0)
    return build(omni, args).eval(), args


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _worker(impl: str, frames: int, size: int, repo: Path, device: str, warmup: int) -> dict:
    model, args = _official(repo, size)
    x = torch.rand(1, 3, frames, size, size) * 2 - 1
    if impl == "official":
        def run() -> torch.Tensor:
            pre = model["pre_vq_conv"](model["encoder"](x, False))
            ids = model["codebook"](torch.nn.functional.normalize(pre, dim=1))["encodings"]
            codes = torch.nn.functional.embedding(ids, model["codebook"].embeddings).permute(0, 4, 1, 2, 3)
            return model["decoder"](model["post_vq_conv"](codes), False)
        model = model.to(device)
    else:
        from vistok.configurable import from_config
        from vistok.importers.omnitokenizer import config_from_args, map_state_dict

        tok = from_config(config_from_args(vars(args), "bench"))
        tok.load_state_dict(map_state_dict(model.state_dict()))
        del model
        tok = tok.eval().to(device)
        chunk = int(impl.split("=")[1]) if "=" in impl else None

        def run() -> torch.Tensor:
            return tok.decode(tok.encode(x, chunk=chunk), chunk=chunk)
    x = x.to(device)
    with torch.no_grad():
        for _ in range(warmup):  # untimed passes first: one-time costs (kernels, caches) out of the figure
            run()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            gc.collect()
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (Linux)
            before = _status_kb("VmRSS") * 1024
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = _status_kb("VmHWM") * 1024 - before
        seconds = time.perf_counter() - start
    return {"impl": impl, "frames": frames, "size": size, "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 2), "peak_mb": round(peak / 2**20)}


def _interleaved(frames: int, size: int, repo: Path, device: str, repeats: int) -> dict:
    from vistok.configurable import from_config
    from vistok.importers.omnitokenizer import config_from_args, map_state_dict

    F = torch.nn.functional
    model, args = _official(repo, size)
    tok = from_config(config_from_args(vars(args), "bench"))
    tok.load_state_dict(map_state_dict(model.state_dict()))
    model, tok = model.to(device), tok.eval().to(device)
    x = (torch.rand(1, 3, frames, size, size) * 2 - 1).to(device)

    def official_encode() -> torch.Tensor:
        return model["codebook"](F.normalize(model["pre_vq_conv"](model["encoder"](x, False)), dim=1))["encodings"]

    def official_decode(ids: torch.Tensor) -> torch.Tensor:
        codes = F.embedding(ids, model["codebook"].embeddings).permute(0, 4, 1, 2, 3)
        return model["decoder"](model["post_vq_conv"](codes), False)

    def timed(fn, *a) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*a)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds: dict[str, list[float]] = {}
    with torch.no_grad():
        ids_official, ids_vistok = official_encode(), tok.encode(x)  # the warm pass
        official_decode(ids_official), tok.decode(ids_vistok)
        for _ in range(repeats):
            for name, fn, arg in (("official encode", official_encode, ()), ("vistok encode", tok.encode, (x,)),
                                  ("official decode", official_decode, (ids_official,)),
                                  ("vistok decode", tok.decode, (ids_vistok,))):
                seconds.setdefault(name, []).append(timed(fn, *arg))
    return seconds


def _print_interleaved(opts: argparse.Namespace) -> None:
    print("| frames | px | step | official s (min / median) | vistok s (min / median) | vistok / official |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in opts.sizes:
        for frames in opts.frames:
            s = _interleaved(frames, size, opts.official_repo, opts.device, opts.interleave)
            for step in ("encode", "decode"):
                o, v = sorted(s[f"official {step}"]), sorted(s[f"vistok {step}"])
                print(f"| {frames} | {size} | {step} | {o[0]:.3f} / {o[len(o) // 2]:.3f} | "
                      f"{v[0]:.3f} / {v[len(v) // 2]:.3f} | {v[0] / o[0]:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 129])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--impls", nargs="+", default=["official", "vistok"],
                        help="official, vistok, or vistok chunk=N (chunked encode and decode)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=0, help="untimed passes before the measured one")
    parser.add_argument("--interleave", type=int, default=0, metavar="N",
                        help="speed only: both in one process, alternating N times (see above)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "FRAMES", "SIZE"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.interleave:
        _print_interleaved(opts)
        return
    if opts.worker:
        impl, frames, size = opts.worker
        print(json.dumps(_worker(impl, int(frames), int(size), opts.official_repo, opts.device, opts.warmup)))
        return
    print("| implementation | frames | px | seconds | frames/s | peak memory (MB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in opts.sizes:
        for frames in opts.frames:
            for impl in opts.impls:
                cmd = [sys.executable, __file__, "--official-repo", str(opts.official_repo), "--device", opts.device,
                       "--warmup", str(opts.warmup),
                       "--worker", impl, str(frames), str(size)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    print(f"| {impl} | {frames} | {size} | failed: {done.stderr.strip().splitlines()[-1]} | | |")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {r['impl']} | {frames} | {size} | {r['seconds']} | {r['frames_per_s']} | {r['peak_mb']} |",
                      flush=True)


if __name__ == "__main__":
    main()
