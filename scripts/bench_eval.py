"""Benchmark of `vistok eval` on this machine (issue 6): standard FID Inception feature throughput, and the
wall time of a full evaluation (rFID, PSNR/SSIM, codebook stats, JPEG/WebP sweeps, plots) of N images at three
token counts.

    python scripts/bench_eval.py                 # a couple of minutes on a 2-core CPU
    python scripts/bench_eval.py --images 1000   # the issue's figure
    python scripts/bench_eval.py --json

Without --model a randomly initialised `titok-demo` (32 px, 32 tokens) is evaluated: the timing does not depend
on the weights. rFID dominates: every image goes through Inception once as a real image and once per token
count, at 299x299 whatever the tokenizer's resolution.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch


def inception_throughput(batch: int, repeats: int, device: str, inception: str | None) -> dict:
    from vistok.metrics.fid import InceptionFeatures

    t0 = time.perf_counter()
    net = InceptionFeatures(inception, device)  # load + one probe forward (TorchScript warm-up)
    load_s = time.perf_counter() - t0
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    net(images)  # warm-up at this batch size
    t0 = time.perf_counter()
    for _ in range(repeats):
        net(images)
    dt = time.perf_counter() - t0
    return {"batch": batch, "images": batch * repeats, "seconds": dt, "images_per_s": batch * repeats / dt,
            "load_and_warmup_s": load_s}


def eval_wall_time(images: int, tokens: list[int], model: str | None, device: str, batch: int,
                   inception: str | None) -> dict:
    from vistok.evaluate import EvalSettings, evaluate
    from vistok.tokenizers import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        if model is None:
            torch.manual_seed(0)
            model = str(build_tokenizer("titok-demo").save_pretrained(f"{tmp}/model"))
        settings = EvalSettings(model=model, input="sample", output=f"{tmp}/eval", num_tokens=tokens,
                                limit=images, batch_size=batch, device=device, inception=inception,
                                progress=False)
        t0 = time.perf_counter()
        result = evaluate(settings)
        wall = time.perf_counter() - t0
    return {"images": result["num_images"], "token_counts": result["token_counts"], "wall_s": wall,
            "images_per_s": result["num_images"] / wall,
            "inception_images": result["num_images"] * (1 + len(result["token_counts"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--images", type=int, default=16, help="images for the eval timing (the issue: 1000)")
    p.add_argument("--tokens", default="1,8,32", help="three token counts")
    p.add_argument("--model", default=None, help="export dir or .ckpt (default: random titok-demo)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="timed Inception batches")
    p.add_argument("--device", default="cpu")
    p.add_argument("--inception", default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args()
    tokens = [int(k) for k in a.tokens.split(",")]
    inc = inception_throughput(a.batch_size, a.repeats, a.device, a.inception)
    ev = eval_wall_time(a.images, tokens, a.model, a.device, a.batch_size, a.inception)
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                       "device": a.device, "torch": torch.__version__},
           "inception": inc, "eval": ev}
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"device {a.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'measure':<40}{'value':>12}")
    print(f"{'Inception load + warm-up (s)':<40}{inc['load_and_warmup_s']:>12.1f}")
    print(f"{'Inception features (img/s, batch ' + str(inc['batch']) + ')':<40}{inc['images_per_s']:>12.2f}")
    print(f"{'eval wall time, ' + str(ev['images']) + ' images, K=' + a.tokens + ' (s)':<40}{ev['wall_s']:>12.1f}")
    print(f"{'eval throughput (img/s)':<40}{ev['images_per_s']:>12.2f}")
    print(f"{'Inception passes in eval (images)':<40}{ev['inception_images']:>12d}")


if __name__ == "__main__":
    main()
