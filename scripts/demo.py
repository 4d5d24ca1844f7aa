"""`make demo`: train the demo tokenizer on the bundled photos, export it, and measure it on held-out crops.

Writes runs/demo/: export/ (the exported tokenizer), reconstructions.png (held-out crops and their decodes at
K = 1, 2, 4, ..., N tokens), ladder.png, metrics.json (summary), eval/ (`vistok eval` output: per-K PSNR/SSIM,
JPEG/WebP at equal bytes, rate_distortion.png), shards/ (the held-out crops as token shards); prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cpu_has_fast_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--images", type=int, default=256, help="held-out crops to measure")
    p.add_argument("--fid-images", type=int, default=128, help="images for the rFID figure")
    p.add_argument("--skip-training", action="store_true", help="reuse the newest checkpoint under --out")
    # Anything else is passed to `vistok fit`, e.g. --trainer.max_steps=100
    a, fit_args = p.parse_known_args()
    out = Path(a.out)

    t0 = time.time()
    if not a.skip_training:
        cmd = [str(Path(sys.executable).with_name("vistok")), "fit", "--config", a.config,
               f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}"]
        # bf16 autocast only pays on CPUs with native bf16 (AVX512-BF16/AMX); elsewhere it is several times slower.
        if cpu_has_fast_bf16():
            cmd.append("--trainer.precision=bf16-mixed")
        print("+", " ".join(cmd + fit_args), flush=True)
        subprocess.run(cmd + fit_args, check=True)
    train_s = time.time() - t0
    ckpts = sorted(out.glob("logs/version_*/checkpoints/last.ckpt"), key=lambda f: f.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"no checkpoint under {out}/logs; run without --skip-training")

    from PIL import Image

    from vistok import Tokenizer
    from vistok.checkpoint import export_checkpoint
    from vistok.data.images import tensor_to_uint8
    from vistok.data.sample import SamplePhotoCrops
    from vistok.evaluate import EvalSettings, evaluate, summary_table
    from vistok.ladder import save_ladder
    from vistok.metrics.fid import compute_fid
    from vistok.shards.writer import encode_to_shards

    # 1. Export the EMA weights of the last checkpoint.
    export_checkpoint(ckpts[-1], out / "export", overwrite=True)  # a rerun replaces its own export
    tok = Tokenizer.from_pretrained(out / "export")

    # 2. Evaluate on held-out crops: PSNR/SSIM per K, JPEG/WebP at equal bytes, grids, rate-distortion plot.
    result = evaluate(EvalSettings(model=str(out / "export"), input="sample", output=str(out / "eval"),
                      limit=a.images, fid=False))
    val = SamplePhotoCrops("val", tok.image_size, a.images)
    x = torch.stack([val[i]["image"] for i in range(len(val))])
    save_ladder(tok, x[8:12], out / "ladder.png")
    (out / "reconstructions.png").write_bytes((out / "eval" / "token_ladder.png").read_bytes())

    # 3. rFID at full length with the standard Inception (few images: biased upwards, for the record).
    n_fid = min(a.fid_images, len(x))
    rfid = None
    try:
        rfid = compute_fid(x[:n_fid], tok.decode(tok.encode(x[:n_fid])))
    except FileNotFoundError as e:
        print(f"rFID skipped: {e}")

    # 4. Encode the held-out crops to token shards, as a downstream AR model would consume them.
    crops = out / "heldout"
    crops.mkdir(parents=True, exist_ok=True)
    for i in range(len(x)):
        Image.fromarray(tensor_to_uint8(x[i])).save(crops / f"{val[i]['key']}.png")
    shards = encode_to_shards(tok, [str(crops)], out / "shards", batch_size=64, shard_size=128, workers=0)

    # 5. Content-adaptive token counts at a PSNR target.
    target = 24.0
    adaptive = tok.encode_adaptive(x, target_psnr=target)
    summary = {
        "train_seconds": round(train_s, 1), "held_out_images": len(x), "rfid_full_length": rfid,
        "rfid_images": n_fid, "eval": str(out / "eval" / "metrics.json"), "shards": shards.to_dict(),
        "adaptive": {"target_psnr": target, "k_histogram": adaptive.histogram(),
                     "mean_tokens": float(adaptive.lengths.float().mean()),
                     "unreachable": int(adaptive.unreachable.sum())},
        "per_k": [r for r in result["rows"] if r["method"] == "tokenizer"],
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))

    print(f"\nheld-out crops of coffee.png and rocket.jpg ({len(x)} of {tok.image_size}x{tok.image_size} px):")
    print(summary_table(result))
    if rfid is not None:
        print(f"rFID at {tok.max_tokens} tokens on {n_fid} images: {rfid:.1f} (few images: biased upwards)")
    print(shards.line())
    print(f"adaptive @ {target:.0f} dB: mean {summary['adaptive']['mean_tokens']:.1f} tokens, "
          f"K histogram {summary['adaptive']['k_histogram']}, unreachable {summary['adaptive']['unreachable']}")
    print(f"training took {train_s:.0f} s; wrote {out}/export, reconstructions.png, ladder.png, metrics.json, "
          f"eval/, shards/")


if __name__ == "__main__":
    main()
