"""`make demo`: train the demo tokenizer on the bundled photos, export it, and measure it on held-out images.

Two held-out sets, never trained on (vistok.data.sample): whole photos resized to the model's size, as a user
feeds pictures (coffee, rocket, grace_hopper and views of 25-100% of them), and native-resolution patches of
coffee and rocket. Writes runs/demo/: export/, reconstructions.png (held-out photos decoded at K = 1, 2, 4,
..., N next to JPEG/WebP at equal bytes), ladder.png, metrics.json (summary), eval_photos/ and eval_patches/
(`vistok eval` output each: per-K PSNR/SSIM/colour error, JPEG/WebP, rate_distortion.png), shards/ (the
held-out photos as token shards); prints the tables and the targets.

Training runs a fixed number of steps in fp32 on every machine, so the figures do not depend on the CPU's
speed, load or bf16 support; a run stopped early (a `--trainer.max_time` cap, an interrupt) is reported
loudly in the summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The targets the demo is held to (issue: a tokenizer that works on photos it has never seen).
TARGETS = {"photos_psnr": 20.0, "photos_gain": 3.0, "patches_psnr": 23.0, "colour_error": 6.0}


def _latest_checkpoint(out: Path) -> Path | None:
    """The run's checkpoint: `vistok fit` keeps one run directory (`--trainer.default_root_dir`) per run."""
    ckpts = sorted(out.glob("checkpoints/last*.ckpt"), key=lambda f: f.stat().st_mtime)
    return ckpts[-1] if ckpts else None


def _planned_steps(config: str, fit_args: list[str]) -> int | None:
    steps = yaml.safe_load(Path(config).read_text()).get("trainer", {}).get("max_steps")
    for arg in fit_args:
        if arg.startswith("--trainer.max_steps="):
            steps = int(arg.split("=", 1)[1])
    return steps


def _tokenizer_rows(result: dict) -> dict[int, dict]:
    return {r["tokens"]: r for r in result["rows"] if r["method"] == "tokenizer"}


def losses_line(export: Path) -> str:
    """What the model trained with, and what the offline machine could add (the measured comparison that keeps
    the demo at L2: docs/benchmarks.md#adversarial-training-on-the-demo-model)."""
    losses = json.loads((export / "config.json").read_text()).get("training", {}).get("losses") or {}
    rec = losses.get("reconstruction", {})
    parts = [f"{name.upper()} x {rec[name]:g}" for name in ("l1", "l2") if rec.get(name)]
    parts += [f"colour x {rec['colour']:g}"] if rec.get("colour") else []
    adv, per = losses.get("adversarial"), losses.get("perceptual")
    parts += [f"PatchGAN from step {adv['start_step']}"] if adv else []
    parts += [f"perceptual ({per['kind']}) x {per['weight']:g}"] if per else []
    missing = [what for what, on in (("no GAN", not adv), ("no perceptual loss", not per)) if on]
    why = (f"; {' and '.join(missing)}: measured no gain at this size (the offline perceptual loss, Inception at "
           "299 px, costs more per step than this model), see "
           "docs/benchmarks.md#adversarial-training-on-the-demo-model")
    listed = " + ".join(parts) or "not recorded (an older export)"
    return f"losses: {listed} + quantizer" + (why if missing else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--photos", type=int, default=192, help="held-out photo views to measure")
    p.add_argument("--patches", type=int, default=256, help="held-out native-resolution patches to measure")
    p.add_argument("--fid-images", type=int, default=192, help="images for the rFID figure")
    p.add_argument("--skip-training", action="store_true", help="reuse the newest checkpoint under --out")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from --out/checkpoints/last.ckpt instead of starting afresh")
    # Anything else is passed to `vistok fit`, e.g. --trainer.max_steps=100
    a, fit_args = p.parse_known_args()
    out = Path(a.out)

    t0 = time.time()
    if not a.skip_training:
        if not a.resume:  # a fresh run: the demo's own run directory is started anew
            for stale in (out / "checkpoints", out / "metrics.csv"):
                if stale.exists():
                    print(f"removing the previous demo run's {stale} (use --resume to continue it)")
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        cmd = [str(Path(sys.executable).with_name("vistok")), "fit", "--config", a.config,
               f"--trainer.default_root_dir={out}",  # the run directory: logs and checkpoints/last.ckpt
               "--trainer.precision=32-true"]  # fp32 everywhere, not bf16 only where a CPU has it
        if a.resume:
            cmd.append("--ckpt_path=last")
        print("+", " ".join(cmd + fit_args), flush=True)
        subprocess.run(cmd + fit_args, check=True)
    train_s = time.time() - t0
    ckpt = _latest_checkpoint(out)
    if ckpt is None:
        raise SystemExit(f"no checkpoint under {out}/checkpoints; run without --skip-training")
    trained_steps = int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
    planned = _planned_steps(a.config, fit_args)
    cut = planned is not None and trained_steps < planned

    from PIL import Image

    from vistok import Tokenizer
    from vistok.data.images import tensor_to_uint8
    from vistok.data.sample import SamplePhotoCrops
    from vistok.evaluate import EvalSettings, evaluate, summary_table
    from vistok.ladder import save_ladder
    from vistok.metrics.fid import compute_fid
    from vistok.saving import export_checkpoint
    from vistok.shards.writer import encode_to_shards

    # 1. Export the EMA weights of the last checkpoint.
    export_checkpoint(ckpt, out / "export", overwrite=True)
    tok = Tokenizer.from_pretrained(out / "export")

    # 2. Evaluate on both held-out sets: PSNR/SSIM/colour per K, JPEG/WebP at equal bytes, grids, plots.
    photos = evaluate(EvalSettings(model=str(out / "export"), input="sample-photos", output=str(out / "eval_photos"),
                                   limit=a.photos, fid=False))
    patches = evaluate(EvalSettings(model=str(out / "export"), input="sample", output=str(out / "eval_patches"),
                                    limit=a.patches, fid=False))
    held = SamplePhotoCrops("photos", tok.image_size, a.photos)
    x = torch.stack([held[i]["image"] for i in range(len(held))])
    save_ladder(tok, x[:6], out / "ladder.png")
    (out / "reconstructions.png").write_bytes((out / "eval_photos" / "reconstructions.png").read_bytes())

    # 3. rFID at full length with the standard Inception (few images: biased upwards, for the record).
    n_fid = min(a.fid_images, len(x))
    rfid = None
    try:
        rfid = compute_fid(x[:n_fid], tok.decode(tok.encode(x[:n_fid])))
    except FileNotFoundError as e:
        print(f"rFID skipped: {e}")

    # 4. Encode the held-out photos to token shards, as a downstream AR model would consume them.
    folder = out / "heldout"
    for stale in (folder, out / "shards"):  # shards of an earlier demo model belong to another encode job
        shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(len(x)):
        Image.fromarray(tensor_to_uint8(x[i])).save(folder / f"{held[i]['key']}.png")
    shards = encode_to_shards(tok, [str(folder)], out / "shards", batch_size=64, shard_size=128, workers=0)

    # 5. Content-adaptive token counts at a PSNR target.
    target = 24.0
    adaptive = tok.encode_adaptive(x, target_psnr=target)

    n = tok.max_tokens
    ph, pa = _tokenizer_rows(photos), _tokenizer_rows(patches)
    checks = {
        f"held-out photos: PSNR at K={n} >= {TARGETS['photos_psnr']:.0f} dB":
            (ph[n]["psnr"], ph[n]["psnr"] >= TARGETS["photos_psnr"]),
        f"held-out photos: PSNR gain K=1 -> K={n} >= {TARGETS['photos_gain']:.0f} dB":
            (ph[n]["psnr"] - ph[1]["psnr"], ph[n]["psnr"] - ph[1]["psnr"] >= TARGETS["photos_gain"]),
        f"held-out patches: PSNR at K={n} >= {TARGETS['patches_psnr']:.0f} dB":
            (pa[n]["psnr"], pa[n]["psnr"] >= TARGETS["patches_psnr"]),
        f"held-out photos: mean-colour error at K={n} <= {TARGETS['colour_error']:.0f} levels":
            (ph[n]["colour_error"], ph[n]["colour_error"] <= TARGETS["colour_error"]),
        f"held-out patches: mean-colour error at K={n} <= {TARGETS['colour_error']:.0f} levels":
            (pa[n]["colour_error"], pa[n]["colour_error"] <= TARGETS["colour_error"]),
    }
    summary = {
        "train_seconds": round(train_s, 1), "trained_steps": trained_steps, "planned_steps": planned,
        "cut_short": cut, "held_out_photos": len(x), "held_out_patches": patches["num_images"],
        "rfid_full_length": rfid, "rfid_images": n_fid,
        "eval": {"photos": str(out / "eval_photos" / "metrics.json"),
                 "patches": str(out / "eval_patches" / "metrics.json")},
        "shards": shards.to_dict(),
        "adaptive": {"target_psnr": target, "k_histogram": adaptive.histogram(),
                     "mean_tokens": float(adaptive.lengths.float().mean()),
                     "unreachable": int(adaptive.unreachable.sum())},
        "photos_per_k": list(ph.values()), "patches_per_k": list(pa.values()),
        "targets": {name: {"value": value, "met": bool(met)} for name, (value, met) in checks.items()},
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))

    print(f"\nheld-out photos resized to {tok.image_size} px (coffee, rocket, grace_hopper; {len(x)} views):")
    print(summary_table(photos))
    print(f"\nheld-out native-resolution patches of coffee and rocket ({patches['num_images']} of "
          f"{tok.image_size} px):")
    print(summary_table(patches))
    print("(colour: mean absolute error of each image's mean R, G, B in levels 0..255)")
    if rfid is not None:
        print(f"rFID at {n} tokens on {n_fid} held-out photos: {rfid:.1f} (few images: biased upwards)")
    print(shards.line())
    print(f"adaptive @ {target:.0f} dB on the photos: mean {summary['adaptive']['mean_tokens']:.1f} tokens, "
          f"K histogram {summary['adaptive']['k_histogram']}, unreachable {summary['adaptive']['unreachable']}")
    print(losses_line(out / "export"))
    print("\ntargets:")
    for name, (value, met) in checks.items():
        print(f"  [{'ok' if met else 'MISSED'}] {name}: {value:.2f}")
    print(f"\ntraining: {trained_steps} steps in {train_s:.0f} s; wrote {out}/export, reconstructions.png, "
          f"ladder.png, metrics.json, eval_photos/, eval_patches/, shards/")
    if cut:
        bar = "!" * 100
        print(f"\n{bar}\nTHIS RUN WAS CUT SHORT: it trained {trained_steps} of {planned} steps (a time cap or an "
              f"interrupt), so\nits figures are NOT the demo's. Finish it with `python scripts/demo.py --resume` "
              f"(no time cap).\n{bar}")


if __name__ == "__main__":
    main()
