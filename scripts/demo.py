"""`make demo`: train the demo tokenizer on the bundled photos, export it, and measure it on held-out crops.

Writes runs/demo/: export/ (the exported tokenizer), reconstructions.png (held-out crops and their decodes at
K = 1, 2, 4, ..., N tokens), ladder.png, metrics.json; prints held-out PSNR per K and the summary.
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
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--images", type=int, default=256, help="held-out crops to measure")
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

    from vistok.checkpoint import export_checkpoint
    from vistok.data.sample import SamplePhotoCrops
    from vistok.ladder import save_ladder
    from vistok.metrics.report import save_image_grid
    from vistok.tokenizers.adaptive import per_image_psnr
    from vistok.tokenizers.dropout import pow2_lengths

    export_checkpoint(ckpts[-1], out / "export")
    from vistok import Tokenizer

    tok = Tokenizer.from_pretrained(out / "export")
    val = SamplePhotoCrops("val", tok.image_size, a.images)
    x = torch.stack([val[i]["image"] for i in range(len(val))])
    ids = tok.encode(x)
    ks = pow2_lengths(tok.max_tokens)
    bits = (tok.codebook_size - 1).bit_length()
    rows = []
    for k in ks:
        recon = tok.decode(ids[:, :k])
        rows.append({"tokens": k, "bytes": k * bits / 8, "psnr": float(per_image_psnr(recon, x).mean()),
                     "mse": float((recon - x).pow(2).mean())})
    used = int(torch.unique(ids).numel())
    target = 20.0
    adaptive = tok.encode_adaptive(x, target_psnr=target)

    save_image_grid([x[:8]] + [tok.decode(ids[:8, :k]) for k in ks], out / "reconstructions.png",
                    ["input"] + [f"K={k}" for k in ks], "held-out crops (coffee, rocket): first K tokens")
    save_ladder(tok, x[8:12], out / "ladder.png")
    metrics = {
        "held_out_images": len(x), "image_size": tok.image_size, "codebook_size": tok.codebook_size,
        "bits_per_token": bits, "per_k": rows, "codes_used": used, "train_seconds": round(train_s, 1),
        "adaptive": {"target_psnr": target, "k_histogram": adaptive.histogram(),
                     "mean_tokens": float(adaptive.lengths.float().mean()),
                     "unreachable": int(adaptive.unreachable.sum())},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"\nheld-out PSNR on {len(x)} crops of coffee.png and rocket.jpg ({tok.image_size}x{tok.image_size}):")
    print(f"{'tokens':>8} {'bytes':>7} {'PSNR dB':>8}")
    for r in rows:
        print(f"{r['tokens']:>8} {r['bytes']:>7.1f} {r['psnr']:>8.2f}")
    print(f"codes used: {used} of {tok.codebook_size}")
    print(f"adaptive @ {target:.0f} dB: mean {metrics['adaptive']['mean_tokens']:.1f} tokens, "
          f"K histogram {metrics['adaptive']['k_histogram']}, unreachable {metrics['adaptive']['unreachable']}")
    print(f"wrote {out / 'export'}, {out / 'reconstructions.png'}, {out / 'ladder.png'}, {out / 'metrics.json'}")


if __name__ == "__main__":
    main()
