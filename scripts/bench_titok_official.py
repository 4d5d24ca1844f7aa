"""Speed of vistok's TiTok / One-D-Piece against the official code, on the same weights.

    python scripts/bench_titok_official.py --official-repo PATH                      # TiTok-S-128, 256 px, CPU
    python scripts/bench_titok_official.py --official-repo PATH --device cuda        # a GPU

Builds the official model (bytedance/1d-tokenizer, its `modeling` package imported from PATH with the imports a
forward pass does not need stubbed, as scripts/make_titok_fixtures.py does), maps its random weights into vistok
with the importer's key map, checks that both give the same ids, then times encode (pixels -> ids) and decode
(ids -> pixels) at batch 1 and 16, fp32 and bf16 autocast. The official code takes [0, 1] pixels and vistok
[-1, 1]; each gets its own range. Prints a markdown table.

The two are timed interleaved (official, vistok, official, vistok, ... on the same inputs after one warm-up call
each) and the table gives the minimum and the median of `--repeats` runs of each, and vistok's minimum over the
official minimum. On a shared machine background load only ever adds time, and interleaving spreads it over both,
so the minima are the figures to compare; the medians show how noisy the run was. The CPU thread count is fixed
(`--threads`, default torch's) and printed; on a CPU shared with other jobs `--threads 1` is the steadier choice
(with several threads, one descheduled thread stalls every parallel region).
Needs omegaconf only for the official config objects; without it a small stand-in is used.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # this checkout
from make_titok_fixtures import _load_official, _stub_unused_imports  # noqa: E402

from vistok.importers.titok import build, map_state_dict  # noqa: E402


class _Config(dict):
    """Attribute access and `.get` over nested dicts: what the official code reads from an OmegaConf config."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Config(value) if isinstance(value, dict) else value


def _omegaconf():
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        stub = types.ModuleType("omegaconf")
        stub.OmegaConf = types.SimpleNamespace(create=lambda d: _Config(d))
        sys.modules["omegaconf"] = stub
    from omegaconf import OmegaConf

    return OmegaConf


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved(fns, repeats: int, device: torch.device) -> list[list[float]]:
    """Seconds per call of each of `fns`, run in turn `repeats` times after one warm-up call each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - t)
    return times


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-repo", type=Path, required=True)
    p.add_argument("--size", default="small", choices=["small", "base", "large"])
    p.add_argument("--num-tokens", type=int, default=128)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--repeats", type=int, default=7, help="timed calls of each implementation per row")
    p.add_argument("--repeats-large", type=int, help="repeats for batches over 1 (default: --repeats)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--steps", default="encode,decode")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    _stub_unused_imports()
    OmegaConf = _omegaconf()
    _load_official(args.official_repo.resolve())
    vq = {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
          "vit_enc_model_size": args.size, "vit_dec_model_size": args.size, "vit_enc_patch_size": 16,
          "vit_dec_patch_size": 16, "num_latent_tokens": args.num_tokens, "finetune_decoder": True}
    config = OmegaConf.create({"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": args.image_size}}})
    official = importlib.import_module("modeling.titok").TiTok(config).eval()
    arch = {"encoder_size": args.size, "decoder_size": args.size, "num_tokens": args.num_tokens, "token_dim": 12,
            "codebook_size": 4096, "l2_norm": True, "legacy": True, "image_size": args.image_size,
            "patch_size": 16, "text_context_length": 0}
    ours = build("titok", arch)
    ours.load_state_dict(map_state_dict(official.state_dict(), ours, True, Path("official")))
    official, ours = official.to(device), ours.to(device).eval()

    x = torch.rand(max(int(b) for b in args.batches.split(",")), 3, args.image_size, args.image_size,
                   device=device) * 2 - 1
    ids_official = official.encode((x + 1) / 2)[1]["min_encoding_indices"].reshape(x.shape[0], -1)
    same = torch.equal(ours.encode(x), ids_official)
    print(f"TiTok {args.size}, {args.num_tokens} tokens, {args.image_size} px on {device}: same ids: {same}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {_processor(device)}")
    print("| batch | precision | step | runs | official min / median (ms) | vistok min / median (ms) "
          "| vistok / official (min) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in (int(b) for b in args.batches.split(",")):
        xb, ib = x[:b], ids_official[:b]
        repeats = args.repeats if b == 1 or args.repeats_large is None else args.repeats_large
        for precision in args.precisions.split(","):
            ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else (
                lambda: torch.autocast(device.type, enabled=False))
            steps = {"encode": (lambda xb=xb: official.encode((xb + 1) / 2), lambda xb=xb: ours.encode(xb)),
                     "decode": (lambda ib=ib: official.decode_tokens(ib), lambda ib=ib: ours.decode(ib))}
            for step, fns in ((s, steps[s]) for s in args.steps.split(",")):
                with ctx():
                    t_off, t_ours = _interleaved(fns, repeats, device)
                print(f"| {b} | {precision} | {step} | {repeats} | {min(t_off) * 1e3:.0f} / "
                      f"{statistics.median(t_off) * 1e3:.0f} | {min(t_ours) * 1e3:.0f} / "
                      f"{statistics.median(t_ours) * 1e3:.0f} | {min(t_ours) / min(t_off):.2f} |", flush=True)


def _processor(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
