"""Tokenizer throughput on this machine: encode/decode images/s, achieved GFLOP/s against the measured matmul
rate, bf16-vs-fp32 token agreement, decode time against the number of tokens K, training step time, peak RSS.

    python scripts/bench_tokenizer.py                 # table
    python scripts/bench_tokenizer.py --json          # one JSON object
    python scripts/bench_tokenizer.py --models titok-demo --batches 1,32

FLOPs are counted with torch.utils.flop_counter (matmuls and convolutions; 2 FLOPs per multiply-add).
bf16 runs under torch.autocast(cpu); quantization stays fp32 (Quantizer contract). Token agreement is measured
on held-out crops of the bundled photos.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import photo_batch  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402
from vistok.tokenizers.prefixes import pow2_lengths  # noqa: E402
from vistok.trainers.losses import reconstruction_loss  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def timed(fn, min_time: float = 1.0, max_iters: int = 20) -> float:
    """Seconds per call: one warm-up call, then repeat until min_time has passed."""
    fn()
    n, start = 0, time.perf_counter()
    while n < max_iters and (n == 0 or time.perf_counter() - start < min_time):
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def matmul_gflops(dtype: torch.dtype, n: int = 1024) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, 1.0, 50) / 1e9


def autocast(dtype: torch.dtype):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def bench_model(name: str, batches: list[int], dtypes: list[str], matmul: dict[str, float]) -> dict:
    tok = build_tokenizer(name).eval()
    n = tok.max_tokens
    real = photo_batch(max(batches), size=tok.image_size)
    out: dict = {"model": name, "image_size": tok.image_size, "tokens": n,
                 "params_m": round(sum(p.numel() for p in tok.parameters()) / 1e6, 2), "rows": []}
    ids32 = tok.encode(real)
    for dname in dtypes:
        dtype = DTYPES[dname]
        for b in batches:
            x = real[:b]
            with autocast(dtype):
                enc_s = timed(lambda x=x: tok.encode(x))
                ids = tok.encode(x)
                dec_s = timed(lambda ids=ids: tok.decode(ids))
                enc_flops = flops(lambda x=x: tok.encode(x))
            gflops = enc_flops / enc_s / 1e9
            out["rows"].append({
                "dtype": dname, "batch": b, "encode_img_s": b / enc_s, "decode_img_s": b / dec_s,
                "encode_gflop_per_img": enc_flops / b / 1e9, "encode_gflop_s": gflops,
                "encode_vs_matmul": gflops / matmul[dname],
            })
        if dname != "fp32":
            with autocast(dtype):
                ids_low = tok.encode(real)
            out[f"token_agreement_{dname}"] = float((ids_low == ids32).float().mean())
    # Decode time against K (fp32, largest batch): a pixel decoder's cost is ~flat in K for token_fill="mask"
    # (it always sees N positions) and grows with K for "truncate".
    b = max(batches)
    out["decode_vs_k"] = {k: b / timed(lambda k=k: tok.decode(ids32[:b, :k]), 0.5, 5)
                          for k in pow2_lengths(n)}
    # One training step (forward + backward + AdamW), fp32 and bf16.
    tok.train()
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-4)
    tb = min(b, 8 if tok.image_size > 64 else 32)
    x = real[:tb]

    def step(dtype: torch.dtype) -> None:
        with torch.enable_grad(), autocast(dtype):
            o = tok(x)
            loss = reconstruction_loss(o.recon, x) + o.quant.loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    out["train_batch"] = tb
    for dname in dtypes:
        out[f"train_step_s_{dname}"] = timed(lambda d=DTYPES[dname]: step(d), 1.0, 3)
    out["peak_rss_mb_so_far"] = peak_rss_mb()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--models", default="titok-demo,titok-s-128")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    dtypes = a.dtypes.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    result = {
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "matmul_gflop_s": {d: matmul_gflops(DTYPES[d]) for d in dtypes},
    }
    result["models"] = [bench_model(m, batches, dtypes, result["matmul_gflop_s"]) for m in a.models.split(",")]
    if a.json:
        print(json.dumps(result, indent=2))
        return
    mm = result["matmul_gflop_s"]
    print(f"threads {result['threads']}, native bf16: {result['cpu_native_bf16']}, matmul GFLOP/s: "
          + ", ".join(f"{d} {v:.1f}" for d, v in mm.items()))
    for m in result["models"]:
        print(f"\n{m['model']} ({m['image_size']} px, {m['tokens']} tokens, {m['params_m']} M params)")
        print(f"{'dtype':>5} {'batch':>5} {'enc img/s':>10} {'dec img/s':>10} {'GFLOP/img':>10} {'GFLOP/s':>8} "
              f"{'vs matmul':>9}")
        for r in m["rows"]:
            print(f"{r['dtype']:>5} {r['batch']:>5} {r['encode_img_s']:>10.1f} {r['decode_img_s']:>10.1f} "
                  f"{r['encode_gflop_per_img']:>10.2f} {r['encode_gflop_s']:>8.1f} {r['encode_vs_matmul']:>9.0%}")
        for d in dtypes[1:]:
            print(f"token agreement {d} vs fp32: {m[f'token_agreement_{d}']:.2%}")
        print("decode img/s vs K: " + ", ".join(f"K={k}: {v:.1f}" for k, v in m["decode_vs_k"].items()))
        print(f"train step (batch {m['train_batch']}): "
              + ", ".join(f"{d} {m[f'train_step_s_{d}']:.3f} s" for d in dtypes)
              + f"; peak RSS so far {m['peak_rss_mb_so_far']:.0f} MB")


if __name__ == "__main__":
    main()
