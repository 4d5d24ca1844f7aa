"""Rectified-flow decoding: speed against steps and guidance, and quality against the pixel decoder (issue 4, item 8).

    python scripts/bench_decode.py                                  # speed only: rf-demo (random weights)
    python scripts/bench_decode.py --pixel runs/demo/export --rf runs/demo_rf/export   # + quality at small K

1. Speed: `tok.decode(ids, steps=S, guidance_scale=G)` images/s for S in --steps and G in --guidance on a batch
   of --batch-size, after a warm-up; a least-squares line `seconds = a + b * steps` per guidance shows the cost
   is linear in steps (R^2) and what one step costs; guidance != 1 runs the doubled batch (about 2x per step).
   The pixel decoder of the same size (titok-demo) is timed once for reference. Weights do not change the speed.
2. Quality (with --pixel and --rf, two exports trained on the same data, e.g. `make demo` and
   `scripts/demo.py --config configs/demo_rf.yaml --out runs/demo_rf`): `vistok eval` on the held-out crops at
   small K for the pixel decoder and for the RF decoder at each --rf-settings pair: PSNR, SSIM and rFID (the
   standard Inception; with few images rFID is biased upwards, compare rows, not papers). Writes a side-by-side
   grid (originals, pixel decodes, RF decodes per K) to --out/rf_vs_pixel.png and everything to --out/*.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def time_decode(tok, ids: torch.Tensor, repeats: int, **kw) -> float:
    """Best-of-`repeats` seconds for one decode of `ids` (B, K)."""
    tok.decode(ids, **kw)  # warm-up (allocations, diffusers scheduler import)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok.decode(ids, **kw)
        best = min(best, time.perf_counter() - t0)
    return best


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x -> (a, b, R^2)."""
    x, y = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    b = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    a = float(y.mean() - b * x.mean())
    ss_res = float(((y - (a + b * x)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return a, b, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def speed(a) -> dict:
    from vistok.loading import load_tokenizer
    from vistok.tokenizers import build_tokenizer

    torch.manual_seed(0)
    tok = (load_tokenizer(a.rf) if a.rf else build_tokenizer(a.variant)).eval()
    if not hasattr(tok.decoder, "sampler"):
        raise SystemExit(f"{a.rf or a.variant}: not a rectified-flow decoder")
    pixel = build_tokenizer(a.pixel_variant).eval()
    x = torch.rand(a.batch_size, 3, tok.image_size, tok.image_size) * 2 - 1
    ids = tok.encode(x)  # (B, N)
    rows = []
    for g in a.guidance:
        for s in a.steps:
            sec = time_decode(tok, ids, a.repeats, steps=s, guidance_scale=g, seed=0)
            rows.append({"guidance": g, "steps": s, "seconds": sec, "img_per_s": a.batch_size / sec,
                         "ms_per_img_step": 1e3 * sec / a.batch_size / s})
    fits = {}
    for g in a.guidance:
        r = [row for row in rows if row["guidance"] == g]
        c, per_step, r2 = linear_fit([row["steps"] for row in r], [row["seconds"] for row in r])
        fits[str(g)] = {"fixed_s": c, "per_step_s": per_step, "r2": r2}
    pix_sec = time_decode(pixel, pixel.encode(x[:, :, : pixel.image_size, : pixel.image_size]), a.repeats)
    return {"model": a.rf or a.variant, "pixel_model": a.pixel_variant, "batch_size": a.batch_size,
            "threads": torch.get_num_threads(), "rows": rows, "fits": fits,
            "pixel_img_per_s": a.batch_size / pix_sec}


def print_speed(r: dict) -> None:
    print(f"\nRF decode speed: {r['model']}, batch {r['batch_size']}, {r['threads']} threads, CPU")
    print(f"{'guidance':>8} {'steps':>5} {'img/s':>9} {'ms/img/step':>12}")
    for row in r["rows"]:
        print(f"{row['guidance']:>8.1f} {row['steps']:>5d} {row['img_per_s']:>9.1f} {row['ms_per_img_step']:>12.3f}")
    for g, f in r["fits"].items():
        print(f"guidance {float(g):.1f}: seconds = {f['fixed_s']:.4f} + {f['per_step_s']:.4f} * steps  "
              f"(R^2 {f['r2']:.4f})")
    print(f"pixel decoder ({r['pixel_model']}), one pass: {r['pixel_img_per_s']:.1f} img/s")


def quality(a) -> dict:
    from vistok.data.sample import SamplePhotoCrops
    from vistok.evaluate import EvalSettings, evaluate
    from vistok.loading import load_tokenizer
    from vistok.metrics.report import save_image_grid

    out = Path(a.out)
    runs = [("pixel", a.pixel, None, None)] + [(f"rf s={st} g={g:g}", a.rf, st, g) for st, g in a.rf_settings]
    table = []
    for name, model, st, g in runs:
        res = evaluate(EvalSettings(model=model, input="sample", output=str(out / name.replace(" ", "_")),
                                    num_tokens=a.tokens, steps=st, guidance=g, limit=a.images, baselines=[],
                                    fid=not a.no_fid))
        for row in res["rows"]:
            table.append({"decoder": name, "tokens": row["tokens"], "psnr": row["psnr"], "ssim": row["ssim"],
                          "rfid": row["rfid"], "eval_seconds": res["wall_time_s"]})
    # side by side: originals, then per K the pixel decode and the RF decode (first guidance)
    pix, rf = load_tokenizer(a.pixel).eval(), load_tokenizer(a.rf).eval()
    val = SamplePhotoCrops("val", pix.image_size, 8)
    x = torch.stack([val[i]["image"] for i in range(len(val))])
    ids_p, ids_r = pix.encode(x), rf.encode(x)
    st, g = a.rf_settings[0]
    columns, labels = [x], ["original"]
    for k in a.tokens:
        columns.append(pix.decode(ids_p[:, :k]))
        columns.append(rf.decode(ids_r[:, :k], steps=st, guidance_scale=g, seed=0))
        labels += [f"pixel K={k}", f"RF K={k}"]
    save_image_grid(columns, out / "rf_vs_pixel.png", labels,
                    title=f"held-out crops: pixel decoder vs rectified flow ({st} steps, guidance {g:g})")
    return {"images": a.images, "rows": table}


def print_quality(r: dict) -> None:
    print(f"\nheld-out crops ({r['images']}); rf s=steps g=guidance:")
    print(f"{'decoder':>14} {'K':>3} {'PSNR':>6} {'SSIM':>6} {'rFID':>7}")
    for row in r["rows"]:
        rfid = "-" if row["rfid"] is None else f"{row['rfid']:.1f}"
        print(f"{row['decoder']:>14} {row['tokens']:>3d} {row['psnr']:>6.2f} {row['ssim']:>6.3f} {rfid:>7}")


def steps_guidance(text: str) -> tuple[int, float]:
    try:
        steps, guidance = text.split(":")
        return int(steps), float(guidance)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS:GUIDANCE, e.g. 25:1.5") from None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--variant", default="rf-demo", help="RF model to time when --rf is not given")
    p.add_argument("--pixel-variant", default="titok-demo", help="pixel decoder timed for reference")
    p.add_argument("--rf", default=None, help="trained RF export (speed and quality)")
    p.add_argument("--pixel", default=None, help="trained pixel-decoder export (quality)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 25, 50])
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    p.add_argument("--images", type=int, default=128, help="held-out crops for the quality rows")
    p.add_argument("--rf-settings", type=steps_guidance, nargs="+", default=[(25, 1.0), (25, 2.0), (5, 1.0)],
                   help="STEPS:GUIDANCE pairs the RF export is evaluated with (the first one fills the grid)")
    p.add_argument("--no-fid", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--out", default="runs/bench_decode")
    a = p.parse_args(argv)
    if bool(a.pixel) != bool(a.rf) and a.pixel:
        p.error("--pixel needs --rf (the quality comparison takes both exports)")
    result: dict = {}
    if not a.skip_speed:
        result["speed"] = speed(a)
        print_speed(result["speed"])
    if a.pixel and a.rf:
        result["quality"] = quality(a)
        print_quality(result["quality"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_decode.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out}/bench_decode.json")
    return result


if __name__ == "__main__":
    main()
