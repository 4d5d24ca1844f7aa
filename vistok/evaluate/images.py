"""Evaluation of an image tokenizer: per token count, against JPEG and WebP at equal bytes.

For every K in the token counts (default 1, 2, 4, ..., N) the images are encoded once at N tokens, the first
K tokens decoded, and scored: rFID (standard TF Inception, `vistok.metrics.fid`; against the originals' statistics,
or against `--reference-stats FILE`), PSNR, SSIM, LPIPS-VGG and LPIPS-Alex (`vistok.metrics.pixel`) and codebook
statistics (`vistok.metrics.codebook`). Bytes per image for the
tokenizer are K * ceil(log2(V)) / 8: a fixed-length code, no entropy coding. JPEG/WebP rows use the real
encoded file sizes (`vistok.metrics.codecs`). The data stream in batches: FID keeps float64 sums, the other
metrics running means, so memory does not grow with the dataset.

Outputs in DIR: metrics.json, metrics.csv, reconstructions.png, token_ladder.png, rate_distortion.png. Every
metric's protocol (network, weights sha256, resolution and resize, image count, reference statistics) is in
metrics.json's `protocol` and in the `# ` comment lines above metrics.csv's header (read it with
`pandas.read_csv(path, comment="#")`).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vistok.evaluate.settings import EvalSettings
from vistok.metrics.codebook import CodebookStats
from vistok.metrics.codecs import CodecSweep, check_codecs
from vistok.metrics.fid import FID, InceptionFeatures
from vistok.metrics.pixel import LPIPS_SKIPPED, PixelMetrics, load_lpips, lpips_networks, lpips_protocol
from vistok.metrics.protocol import protocol_lines
from vistok.metrics.report import plot_rate_distortion, save_image_grid
from vistok.tokenizers.prefixes import decode_prefixes, pow2_lengths
from vistok.training_record import FLATTERED_RFID

CSV_COLUMNS = ("method", "tokens", "quality", "bytes", "bpp", "rfid", "psnr", "ssim", "lpips_vgg", "lpips_alex",
               "lpips", "colour_error", "codebook_usage",
               "perplexity", "dead_codes")
BYTES_RULE = ("tokenizer: K * ceil(log2(codebook_size)) / 8 bytes per image (fixed-length code, no entropy "
              "coding); jpeg/webp: mean size of the Pillow-encoded files")
SAMPLE_DEFAULT_LIMIT = 256
GRID_IMAGES = 8
FEW_FID_IMAGES = 1000  # below this, rFID is strongly biased upwards: say so on screen


def token_bytes(k: int, codebook_size: int) -> float:
    return k * math.ceil(math.log2(codebook_size)) / 8


def _token_counts(requested: list[int] | None, max_tokens: int) -> list[int]:
    ks = sorted(set(requested)) if requested else pow2_lengths(max_tokens)
    bad = [k for k in ks if not 1 <= k <= max_tokens]
    if bad:
        raise ValueError(f"--num-tokens {bad}: the model accepts 1..{max_tokens} tokens")
    return ks


def _batches(settings: EvalSettings, size: int):
    """Yield (B, 3, size, size) batches in [-1, 1], stopping after `limit` images, and the number of images
    expected (None when unknown) as the first item."""
    from vistok.data import build_dataset, collate_images

    limit = settings.limit
    length = limit or SAMPLE_DEFAULT_LIMIT
    ds = build_dataset(settings.input, size, train=False, length=length)
    total = min(len(ds), limit) if hasattr(ds, "__len__") and limit else (len(ds) if hasattr(ds, "__len__")
                                                                          else limit)
    yield total
    loader = DataLoader(ds, batch_size=settings.batch_size, collate_fn=collate_images)
    seen = 0
    for batch in loader:
        images = batch["image"]
        if limit is not None:
            images = images[: limit - seen]
        if images.shape[0] == 0:
            continue
        seen += images.shape[0]
        yield images
        if limit is not None and seen >= limit:
            return


def _few_images(n: int) -> str:
    return (f"rFID on {n} images (fewer than {FEW_FID_IMAGES}) is strongly biased upwards: compare it only with "
            "rFIDs of the same image count, not with published numbers (50,000 images)")


def _say(settings: EvalSettings, message: str) -> None:
    """A line on the screen (stderr) while the progress bar is on; metrics.json's notes keep it too."""
    if settings.progress:
        tqdm.write(message, file=sys.stderr)


def evaluate_images(settings: EvalSettings) -> dict[str, Any]:
    """Run the evaluation of an image model, write the outputs, return the metrics.json content."""
    from vistok.devices import resolve_device
    from vistok.loading import load_tokenizer
    from vistok.training_record import trained_on_fid_network, training_losses

    start = time.perf_counter()
    check_codecs(settings.baselines)
    device = resolve_device(settings.device)
    out = Path(settings.output)
    tok = load_tokenizer(settings.model, map_location=device).eval()
    ks = _token_counts(settings.num_tokens, tok.max_tokens)
    v = tok.codebook_size
    inception = InceptionFeatures(settings.inception, device) if settings.fid else None
    fids = {k: FID(inception) for k in ks} if inception is not None else {}
    reference = None
    if settings.reference_stats is not None:
        from vistok.metrics.reference_stats import load_reference_stats

        if inception is None:
            raise ValueError("--reference-stats needs rFID (leave out --no-fid)")
        reference = load_reference_stats(settings.reference_stats)
        if reference.mu.numel() != inception.num_features:
            raise ValueError(f"--reference-stats {reference.path}: {reference.mu.numel()}-d statistics, the "
                             f"Inception features are {inception.num_features}-d")
    lpips_net = load_lpips(settings.lpips, device)
    side = tok.input_spec.side
    lpips_nets, lpips_notes = lpips_networks(side, device) if settings.perceptual else ({}, [LPIPS_SKIPPED])
    pixel = {k: PixelMetrics(lpips_net, lpips_nets) for k in ks}
    books = {k: CodebookStats(v) for k in ks}
    sweeps = [CodecSweep(c, keep=GRID_IMAGES) for c in settings.baselines]
    shown: list[torch.Tensor] = []
    ladder: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    n, pixels = 0, 0

    batches = _batches(settings, tok.input_spec.side)  # the loaders crop squares: a ValueError otherwise
    total = next(batches)
    # The bar counts images once every metric of their batch is done; with rFID most of the time is Inception
    # (1 + len(ks) forwards per image), so the bar's text says which pass runs and the Inception images done.
    warned = fids and total is not None and total < FEW_FID_IMAGES
    if warned:
        _say(settings, f"warning: {_few_images(total)}")
    bar = tqdm(total=total, unit="img", desc="eval", disable=not settings.progress, dynamic_ncols=True)
    inception_done = 0

    def stage(text: str) -> None:
        bar.set_postfix_str(text + (f", Inception {inception_done} img" if fids else ""), refresh=True)

    for real in batches:
        real = real.to(device)
        ids = tok.encode(real)  # (B, N)
        if fids:
            stage("rFID features of the originals")
            real_feats = fids[ks[0]].features(real)
            inception_done += real.shape[0]
        room = GRID_IMAGES - sum(x.shape[0] for x in shown)
        if room > 0:
            shown.append(real[:room].cpu())
        stage(f"K={ks[0]}: decode")
        prefixes = decode_prefixes(tok, ids, ks, steps=settings.steps, guidance_scale=settings.guidance,
                                   seed=settings.seed)
        for i, (k, recon) in enumerate(prefixes):  # recon (B, 3, H, W) from the first k tokens
            if fids:
                stage(f"K={k}: rFID features")
                fids[k].update_features(real_feats, real=True)
                fids[k].update_features(fids[k].features(recon), real=False)
                inception_done += real.shape[0]
            pixel[k].update(real, recon)
            books[k].update(ids[:, :k])
            if room > 0:
                ladder[k].append(recon[:room].cpu())
            if i + 1 < len(ks):
                stage(f"K={ks[i + 1]}: decode")
        for sweep in sweeps:
            sweep.update(real.cpu())
        n += real.shape[0]
        pixels = real.shape[-1] * real.shape[-2]
        bar.update(real.shape[0])
    if n == 0:
        bar.close()
        raise ValueError(f"--input {settings.input}: no images were read")
    notes = [_few_images(n)] if fids and n < FEW_FID_IMAGES else []
    if fids and n < 2 and reference is None:
        notes.insert(0, f"rFID skipped: a covariance needs at least 2 images, got {n}")
        _say(settings, f"warning: {notes[0]}")

    rows: list[dict[str, Any]] = []
    for k in ks:
        b = token_bytes(k, v)
        if fids and n >= 2:
            stage(f"K={k}: Frechet distance")
        if reference is not None:
            rfid = reference.distance(fids[k].fake, "Inception")
        else:
            rfid = float(fids[k].compute()) if fids and n >= 2 else None
        rows.append({"method": "tokenizer", "tokens": k, "quality": None, "bytes": b, "bpp": 8 * b / pixels,
                     "rfid": rfid, **pixel[k].compute(), **books[k].compute()})
    for sweep in sweeps:
        rows += [{"tokens": None, "rfid": None, "lpips": None, "lpips_vgg": None, "lpips_alex": None, **r}
                 for r in sweep.rows()]
    stage("writing tables and plots")
    bar.close()
    if notes and not warned:
        _say(settings, f"warning: {notes[0]}")
    losses = training_losses(settings.model)
    if fids and trained_on_fid_network(losses):
        notes.append(FLATTERED_RFID)
        _say(settings, f"warning: {FLATTERED_RFID}")

    result = {
        "model": str(settings.model),
        "input": settings.input,
        "num_images": n,
        "image_size": tok.input_spec.side,
        "codebook_size": v,
        "bits_per_token": math.ceil(math.log2(v)),
        "max_tokens": tok.max_tokens,
        "token_counts": ks,
        "bytes_per_image": BYTES_RULE,
        "decoder": {"steps": settings.steps, "guidance_scale": settings.guidance, "seed": settings.seed},
        "fid": ({"network": str(inception.path), "features": "pool3, 2048-d", "input": "x_uint8 / 128 - 1",
                 "resize": "299x299 bilinear, align_corners=False, no antialias",
                 "note": "rFID on few images is strongly biased upwards; compare only at equal image counts"}
                if inception is not None else None),
        "lpips": settings.lpips if lpips_net is not None else None,
        "protocol": _protocol(inception, reference, lpips_nets, lpips_net, settings, n, side),
        "training_losses": losses,
        "device": device,
        "notes": notes + lpips_notes,
        "rows": rows,
        "settings": asdict(settings),
        "wall_time_s": None,
    }
    if not settings.fid:
        result["notes"].append("rFID skipped (--no-fid)")
    _write(result, out, shown, ladder, sweeps, rows)
    result["wall_time_s"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def _write(result: dict[str, Any], out: Path, shown: list[torch.Tensor], ladder: dict[int, list[torch.Tensor]],
           sweeps: list[CodecSweep], rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.csv", "w", newline="") as f:
        for line in protocol_lines(result["protocol"]):
            f.write(f"# {line}\n")
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    originals = torch.cat(shown)
    ks = list(ladder)
    save_image_grid([originals] + [torch.cat(ladder[k]) for k in ks], out / "token_ladder.png",
                    ["original"] + [f"K={k}" for k in ks], title="token ladder: first K tokens decoded")
    # Reconstructions at N tokens next to each codec at the quality whose bytes are closest to the tokenizer's.
    k_max, target = ks[-1], rows[len(ks) - 1]["bytes"]
    columns, labels = [originals, torch.cat(ladder[k_max])], ["original", f"tokens K={k_max} ({target:.0f} B)"]
    for sweep in sweeps:
        q = min(sweep.qualities, key=lambda q: abs(sweep.bytes[q] / max(sweep.count, 1) - target))
        columns.append(torch.cat(sweep.kept[q]))
        labels.append(f"{sweep.codec} q={q} ({sweep.bytes[q] / max(sweep.count, 1):.0f} B)")
    save_image_grid(columns, out / "reconstructions.png", labels, title="reconstructions near equal bytes")
    plot_rate_distortion(rows, out / "rate_distortion.png",
                         title=f"{Path(result['model']).name}: {result['num_images']} images"
                         + (" (rFID flattered: Inception was a training loss)"
                            if FLATTERED_RFID in result["notes"] else ""))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))


def _protocol(inception: InceptionFeatures | None, reference: Any, lpips_nets: dict, lpips_script: Any,
              settings: EvalSettings, n: int, side: int) -> dict[str, dict[str, Any]]:
    """Per metric column: the network, its weights' sha256, resolution and resize, image count, reference."""
    from vistok.weights.cache import sha256_file

    out: dict[str, dict[str, Any]] = {}
    if inception is not None:
        out["rfid"] = {"network": "Inception-v3 (TF FID port), pool3 2048-d", "weights": str(inception.path),
                       "weights_sha256": sha256_file(inception.path), "input": "8-bit images, x_uint8 / 128 - 1",
                       "resolution": f"{side}x{side} resized to 299x299",
                       "resize": "bilinear, align_corners=False, no antialias", "images": n,
                       "reference_stats": reference.describe() if reference is not None
                       else f"the {n} original images"}
    out.update(lpips_protocol(lpips_nets, n, side))
    if lpips_script is not None:
        out["lpips"] = {"network": f"TorchScript {settings.lpips}", "weights_sha256": sha256_file(Path(settings.lpips)),
                        "resolution": f"{side}x{side} (native)", "images": n}
    out["psnr"] = {"input": "8-bit images", "resolution": f"{side}x{side}", "images": n, "mean": "per image"}
    return out


def summary_table(result: dict[str, Any]) -> str:
    """A short fixed-width table of the rows."""
    def fmt(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    lines = [f"{'method':<10}{'K/q':>5}{'bytes':>9}{'bpp':>8}{'rFID':>9}{'PSNR':>8}{'SSIM':>7}{'LPIPS-V':>9}"
             f"{'LPIPS-A':>9}{'colour':>8}{'usage':>7}"]
    for r in result["rows"]:
        kq = r["tokens"] if r["method"] == "tokenizer" else r["quality"]
        lines.append(f"{r['method']:<10}{kq:>5}{fmt(r['bytes'], '.1f'):>9}{fmt(r['bpp'], '.3f'):>8}"
                     f"{fmt(r['rfid'], '.2f'):>9}{fmt(r['psnr'], '.2f'):>8}{fmt(r['ssim'], '.3f'):>7}"
                     f"{fmt(r.get('lpips_vgg'), '.4f'):>9}{fmt(r.get('lpips_alex'), '.4f'):>9}"
                     f"{fmt(r.get('colour_error'), '.2f'):>8}"
                     f"{fmt(r.get('codebook_usage'), '.3f'):>7}")
    return "\n".join(lines)
