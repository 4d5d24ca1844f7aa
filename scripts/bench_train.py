"""Training step time and peak memory, fp32 against bf16-mixed, for a registered variant (issue 13, item 9).

    python scripts/bench_train.py                                   # titok-s-128 at 256 px, batch 2, CPU
    python scripts/bench_train.py --batch-size 32 --device cuda --losses recon,gan --json

One step = forward, loss, backward, AdamW step (and, for losses with a discriminator, its own step), with the
quantizer in fp32 as in training. Each (loss, precision) pair runs in a fresh process so the peak memory is its
own: on the CPU the peak resident set size (`resource`), on CUDA `torch.cuda.max_memory_allocated`. A loss
configuration is one entry of `LOSSES`; weights are random (the speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from vistok.trainers.losses import reconstruction_loss

PRECISIONS = ("fp32", "bf16-mixed")


def recon_loss(tok: nn.Module, x: torch.Tensor, extra: dict[str, nn.Module]) -> torch.Tensor:
    out = tok(x)
    return reconstruction_loss(out.recon, x) + out.quant.loss


def gan_loss(tok: nn.Module, x: torch.Tensor, extra: dict[str, nn.Module]) -> torch.Tensor:
    """Reconstruction + hinge generator loss through a PatchGAN, then the discriminator's own hinge step (its
    gradients go to the discriminator's parameters only: the caller's optimizer steps both)."""
    from vistok.trainers.gan_losses import generator_loss, hinge_d_loss

    out = tok(x)
    disc = extra["disc"]
    g = reconstruction_loss(out.recon, x) + out.quant.loss + 0.1 * generator_loss(disc(out.recon))
    d = hinge_d_loss(disc(x), disc(out.recon.detach()))
    return g + d  # disjoint parameters: one backward serves both updates


def build_disc() -> dict[str, nn.Module]:
    from vistok.nn.discriminator import NLayerDiscriminator

    return {"disc": NLayerDiscriminator()}


def perceptual_loss(tok: nn.Module, x: torch.Tensor, extra: dict[str, nn.Module]) -> torch.Tensor:
    """Reconstruction + a frozen perceptual loss: the offline Inception feature loss (pool3 at 299 px) for
    "perceptual", LPIPS-VGG at the images' resolution (weights from the cache) for "lpips"."""
    out = tok(x)
    return reconstruction_loss(out.recon, x) + out.quant.loss + extra["perceptual"](out.recon, x)


def build_perceptual() -> dict[str, nn.Module]:
    from vistok.trainers.perceptual import InceptionFeatureLoss

    return {"perceptual": InceptionFeatureLoss()}  # its network sits outside the module tree: nothing to train


def build_lpips() -> dict[str, nn.Module]:
    from vistok.trainers.perceptual import LPIPSVGG

    return {"perceptual": LPIPSVGG()}  # the cached weights (`vistok weights fetch`); nothing to train


# name -> (loss(tok, x, extra modules), builder of the extra trained modules). Add a configuration here.
LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[[], dict[str, nn.Module]]]] = {
    "recon": (recon_loss, dict),
    "gan": (gan_loss, build_disc),
    "perceptual": (perceptual_loss, build_perceptual),
    "lpips": (perceptual_loss, build_lpips),
}


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def count_flops(tok: nn.Module, loss_fn: Callable[..., torch.Tensor], extra: dict[str, nn.Module],
                x: torch.Tensor) -> float:
    """Floating-point operations of one forward + backward on one image (torch's FLOP counter: matmuls,
    convolutions, attention; elementwise work not counted), for GPU-hour estimates."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss_fn(tok, x[:1], extra).backward()
    for m in (tok, *extra.values()):
        m.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def run_one(variant: str, loss_name: str, precision: str, batch: int, steps: int, warmup: int, device: str,
            threads: int | None, flops: bool = False) -> dict:
    from vistok.tokenizers import build_tokenizer

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    tok = build_tokenizer(variant).to(dev).train()
    loss_fn, build_extra = LOSSES[loss_name]
    extra = {k: m.to(dev).train() for k, m in build_extra().items()}
    params = [p for m in (tok, *extra.values()) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    spec = tok.input_spec
    size = spec.height
    x = torch.rand(batch, spec.channels, spec.height, spec.width, device=dev) * 2 - 1  # (B, C, H, W)
    autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else nullcontext())
    flops_per_image = count_flops(tok, loss_fn, extra, x) if flops else None
    times = []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        with autocast:
            loss = loss_fn(tok, x, extra)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        print(f"  {loss_name} {precision}: step {i + 1}/{warmup + steps} {time.perf_counter() - t0:.2f} s",
              file=sys.stderr, flush=True)
    step = statistics.median(times)
    return {"variant": variant, "loss": loss_name, "precision": precision, "batch": batch, "image_size": size,
            "device": str(dev), "step_s": step, "step_min_s": min(times), "images_per_s": batch / step,
            "peak_mib": peak_memory_mib(dev),
            "params_m": sum(p.numel() for p in params) / 1e6, "steps": steps, "train_gflops_per_image":
            flops_per_image / 1e9 if flops_per_image else None}


def _child(queue: mp.Queue, kwargs: dict) -> None:
    queue.put(run_one(**kwargs))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--variant", default="titok-s-128")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--losses", default="recon", help=f"comma-separated, of: {', '.join(LOSSES)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--flops", action="store_true", help="also count the FLOPs of one training step per image")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = p.parse_args(argv)
    losses, precisions = a.losses.split(","), a.precisions.split(",")
    for name, allowed, what in ((losses, LOSSES, "--losses"), (precisions, PRECISIONS, "--precisions")):
        bad = [n for n in name if n not in allowed]
        if bad:
            p.error(f"{what}: unknown {bad}; choose from {list(allowed)}")
    rows = []
    ctx = mp.get_context("spawn")  # a fresh process per row: its peak memory is its own
    for loss_name in losses:
        for precision in precisions:
            queue = ctx.Queue()
            kwargs = dict(variant=a.variant, loss_name=loss_name, precision=precision, batch=a.batch_size,
                          steps=a.steps, warmup=a.warmup, device=a.device, threads=a.threads, flops=a.flops)
            proc = ctx.Process(target=_child, args=(queue, kwargs))
            proc.start()
            row = queue.get()
            proc.join()
            rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{rows[0]['variant']} at {rows[0]['image_size']} px, batch {a.batch_size}, {rows[0]['device']}, "
              f"median of {a.steps} steps after {a.warmup}")
        print("| loss | precision | trained params (M) | step (s), median (min) | images/s per device | "
              "peak memory (MiB) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['loss']} | {r['precision']} | {r['params_m']:.1f} | {r['step_s']:.2f} "
                  f"({r['step_min_s']:.2f}) | {r['images_per_s']:.2f} | {r['peak_mib']:.0f} |")
        for r in rows:
            if r["train_gflops_per_image"]:
                print(f"{r['loss']} {r['precision']}: {r['train_gflops_per_image']:.1f} GFLOP per image per training "
                      "step (forward + backward)")
    return rows


if __name__ == "__main__":
    main()
