"""Compare exported tokenizers side by side on the same held-out images: one PNG with the inputs and each
model's reconstructions at each K, and a table of PSNR / SSIM per K (and rFID at full length) per model.

    python scripts/compare_models.py runs/demo/export runs/demo_gan/export --labels plain,gan
    python scripts/compare_models.py A/export B/export --input photos/ --num-tokens 8,64 --out compare/

Images: `--input sample-photos` (default: the held-out whole photos of the bundled set, as `vistok eval` uses
them) or a folder / files, resized and center-cropped to each model's input size. Writes
`<out>/side_by_side.png` and `<out>/compare.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def held_out_images(source: str, size: int, n: int) -> torch.Tensor:
    """(n, 3, size, size) in [-1, 1]: the bundled held-out photos or the images of a folder / files."""
    if source == "sample-photos":
        from vistok.data.sample import SamplePhotoCrops

        held = SamplePhotoCrops("photos", size, n)
        return torch.stack([held[i]["image"] for i in range(len(held))])
    from vistok.data.images import load_images, scan_images

    files = scan_images(source) if Path(source).is_dir() else [source]
    return load_images(files[:n], size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="export directories")
    p.add_argument("--labels", default=None, help="comma-separated names, one per model (default: folder names)")
    p.add_argument("--input", default="sample-photos")
    p.add_argument("--num-tokens", default=None, help="comma-separated K (default: 1, 4, 16, ..., N)")
    p.add_argument("--images", type=int, default=192, help="images measured")
    p.add_argument("--show", type=int, default=6, help="images shown in the PNG")
    p.add_argument("--fid", action="store_true", help="also rFID at full length (standard Inception)")
    p.add_argument("--out", default="runs/compare")
    a = p.parse_args()

    from vistok.metrics.pixel import psnr_ssim
    from vistok.metrics.report import save_image_grid
    from vistok.tokenizers.tokenizer import Tokenizer

    labels = a.labels.split(",") if a.labels else [Path(m).resolve().parent.name for m in a.models]
    if len(labels) != len(a.models):
        p.error(f"--labels names {len(labels)} models, {len(a.models)} given")
    toks = [Tokenizer.from_pretrained(m).eval() for m in a.models]
    sizes = {t.image_size for t in toks}
    if len(sizes) != 1:
        p.error(f"the models take different image sizes {sorted(sizes)}: compare models of one input size")
    n_max = min(t.max_tokens for t in toks)
    ks = ([int(k) for k in a.num_tokens.split(",")] if a.num_tokens else
          sorted({min(4 ** i, n_max) for i in range(8)}))
    x = held_out_images(a.input, sizes.pop(), a.images)
    out = Path(a.out)
    results: dict[str, dict] = {}
    columns, names = [x[: a.show]], ["input"]
    with torch.inference_mode():
        for label, tok in zip(labels, toks):
            ids = tok.encode(x)  # (B, N): every K is a prefix
            rows = {}
            for k in ks:
                rec = tok.decode(ids[:, :k])
                psnr, ssim = psnr_ssim(x, rec)
                rows[k] = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}
                if len(ks) <= 3 or k in (ks[0], ks[-1]):
                    columns.append(rec[: a.show])
                    names.append(f"{label} K={k}")
            if a.fid:
                from vistok.metrics.fid import compute_fid

                rows["rfid_full"] = float(compute_fid(x, tok.decode(ids)))
            results[label] = rows
    save_image_grid(columns, out / "side_by_side.png", names, f"held-out images ({a.input})")
    (out / "compare.json").write_text(json.dumps({"images": len(x), "input": a.input, "models": dict(zip(labels,
                                                  a.models)), "results": results}, indent=1))
    print(f"{len(x)} images from {a.input}")
    print("model".ljust(14) + "".join(f"K={k}: PSNR / SSIM".rjust(24) for k in ks))
    for label, rows in results.items():
        print(label[:13].ljust(14) + "".join(f"{rows[k]['psnr']:.2f} / {rows[k]['ssim']:.3f}".rjust(24) for k in ks)
              + (f"   rFID {rows['rfid_full']:.1f}" if "rfid_full" in rows else ""))
    print(f"wrote {out}/side_by_side.png, {out}/compare.json")


if __name__ == "__main__":
    main()
