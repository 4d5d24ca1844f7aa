"""Video reconstruction metrics: per-frame PSNR / SSIM, temporal flicker and rFVD, and `evaluate_videos`, which
runs any reconstruction callable over a set of clips and writes JSON, CSV and a strip of frames.

- LPIPS-VGG and LPIPS-Alex (`vistok.metrics.pixel.lpips_networks`) of every frame at its own resolution,
  averaged over frames and clips (`lpips=False` skips them).
- PSNR and SSIM are the image metrics (`vistok.metrics.pixel.psnr_ssim`: 8-bit pixels, PSNR per frame capped
  at 100 dB) applied to every frame, then averaged over frames and clips; the mean per frame index is kept too
  (a causal tokenizer's first frame is coded differently from the rest).
- Temporal flicker: on 8-bit levels, the mean absolute difference between the reconstruction's frame-to-frame
  change and the original's, |(y[t+1] - y[t]) - (x[t+1] - x[t])|. A reconstruction that is wrong in the same
  way on every frame scores 0; one whose errors change from frame to frame (shimmer, popping textures) scores
  high even at a good PSNR. The motion of both (mean |x[t+1] - x[t]|) is reported beside it: a reconstruction
  that freezes the video has a motion near 0 against the original's.
- rFVD (`vistok.metrics.fvd`): the Kinetics-400 I3D (built in, or a TorchScript given by path), the first 16
  frames of each clip at 224 px. With clips shorter than 16 frames, or `fvd=False`, FVD is null and `fvd_note`
  says why (once, also in the log). Clips are few in a small evaluation: compare FVDs only at equal clip counts
  and resolution; the protocol is written into the JSON (`fvd_protocol`). `reference_stats` (mu, sigma) replace
  the originals' statistics, to compare with published numbers measured against a dataset's statistics.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vistok.data.images import to_uint8
from vistok.metrics.frechet import GaussianStats
from vistok.metrics.fvd import CLIP_FRAMES, I3DFeatures, protocol
from vistok.metrics.pixel import LPIPS_SKIPPED, lpips_networks, lpips_protocol, psnr_ssim
from vistok.metrics.protocol import protocol_lines

log = logging.getLogger("vistok.metrics")
FVD_SKIPPED = "rFVD skipped (asked for: --no-fvd)"
FEW_FVD_CLIPS = 256  # below this, rFVD is strongly biased upwards: say so
CSV_COLUMNS = ("index", "key", "psnr", "ssim", "lpips_vgg", "lpips_alex", "flicker", "motion_real", "motion_fake")


def check_videos(x: torch.Tensor, what: str = "videos") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be (B, 3, T, H, W) in [-1, 1], got {shape}")
    return x


def per_frame_psnr_ssim(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR (dB) and SSIM of every frame, each (B, T), for (B, 3, T, H, W) videos in [-1, 1]."""
    check_videos(real, "original videos")
    check_videos(fake, "reconstructed videos")
    if real.shape != fake.shape:
        raise ValueError(f"original and reconstructed videos differ in shape: {tuple(real.shape)} vs "
                         f"{tuple(fake.shape)}")
    b, _, t = real.shape[:3]
    frames = lambda v: v.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W)
    psnr, ssim = psnr_ssim(frames(real), frames(fake.to(real.device)))
    return psnr.reshape(b, t), ssim.reshape(b, t)


def temporal_flicker(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per video (B,), in 8-bit levels: "flicker" = mean |diff_t(fake) - diff_t(real)|, and the motion
    mean |diff_t(.)| of the original ("motion_real") and the reconstruction ("motion_fake"). One-frame videos
    have none of them (NaN)."""
    check_videos(real)
    if real.shape[2] < 2:
        nan = torch.full((real.shape[0],), float("nan"))
        return {"flicker": nan, "motion_real": nan, "motion_fake": nan.clone()}
    x, y = to_uint8(real).float(), to_uint8(fake.to(real.device)).float()
    dx, dy = x[:, :, 1:] - x[:, :, :-1], y[:, :, 1:] - y[:, :, :-1]  # (B, 3, T-1, H, W)
    dims = (1, 2, 3, 4)
    return {"flicker": (dy - dx).abs().mean(dims).cpu(), "motion_real": dx.abs().mean(dims).cpu(),
            "motion_fake": dy.abs().mean(dims).cpu()}


def _batches(clips: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, list[str] | None]]:
    """(videos, keys or None) from a (N, 3, T, H, W) tensor or an iterable of tensors / {"video", "key"} dicts."""
    if isinstance(clips, torch.Tensor):
        check_videos(clips, "clips")
        for x in clips.split(batch_size):
            yield x, None
        return
    for item in clips:
        if isinstance(item, dict):
            if "video" not in item:
                raise ValueError(f"a batch of clips must hold 'video', got keys {sorted(item)}")
            yield check_videos(item["video"], "clips"), item.get("key")
        else:
            yield check_videos(item, "clips"), None


def evaluate_videos(
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    clips: Any,
    i3d: str | Path | None = None,
    fvd: bool = True,
    reference_stats: Any = None,
    fps: float | None = None,
    lpips: bool = True,
    out_dir: str | Path | None = None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    fvd_frames: int = CLIP_FRAMES,
    strip_clips: int = 4,
    strip_frames: int = 8,
    progress: bool = True,
    name: str = "reconstruction",
    skipped: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Reconstruct every clip and measure it; returns the JSON written to `out_dir` (when given).

    `reconstruct`: (B, 3, T, H, W) -> (B, 3, T, H, W) in [-1, 1] (a tokenizer's encode + decode, a codec, ...),
    called under `torch.inference_mode` on `device`. `clips`: a (N, 3, T, H, W) tensor in [-1, 1] (split into
    `batch_size` batches), or an iterable of such tensors or of {"video", "key"} batches (a video loader).
    `i3d`: path of a Kinetics-400 I3D TorchScript for rFVD (None: the built-in I3D; a path that does not exist
    is an error, before any work); `fvd=False` skips rFVD with a note. `reference_stats`: a
    `vistok.metrics.reference_stats.ReferenceStats` whose mu / sigma replace the originals' I3D statistics.
    `fps`: the rate the clips were read at, recorded in the protocol. `lpips`: per-frame LPIPS-VGG / -Alex.
    Writes `video_metrics.json`,
    `video_metrics.csv` (one row per clip) and `video_frames.png` (`strip_clips` clips, `strip_frames` frames
    each: original above reconstruction). `skipped`: the inputs the clip reader could not read ({file, reason}),
    filled while `clips` is iterated; recorded as "skipped" in the result and the JSON."""
    if i3d is not None and fvd and not Path(i3d).is_file():
        raise FileNotFoundError(f"I3D weights not found: i3d={i3d} is no file (a Kinetics-400 I3D TorchScript; "
                                "leave it out for the built-in I3D)")
    net: I3DFeatures | None = None  # built on the first batch long enough for the protocol
    fvd_note = None if fvd else FVD_SKIPPED
    lp_nets: dict[str, Any] | None = None if lpips else {}
    lp_notes = [] if lpips else [LPIPS_SKIPPED]
    real_stats = fake_stats = None
    rows: list[dict[str, Any]] = []
    psnr_t = ssim_t = None  # (T,) sums over clips, per frame index
    shown: list[tuple[torch.Tensor, torch.Tensor]] = []
    shape = None
    bar = tqdm(unit="clip", desc="video eval", disable=not progress, dynamic_ncols=True)
    for x, keys in _batches(clips, batch_size):
        if x.shape[0] == 0:
            continue
        if shape is None:
            shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != shape:
            raise ValueError(f"clips must share one shape (3, T, H, W): got {tuple(x.shape[1:])} after {shape}")
        x = x.to(device, torch.float32)
        with torch.inference_mode():
            y = reconstruct(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"reconstruct returned {got} for clips of shape {tuple(x.shape)}; it must return "
                             "the same (B, 3, T, H, W)")
        x, y = x.float().cpu(), y.float().cpu()
        psnr, ssim = per_frame_psnr_ssim(x, y)  # (B, T)
        temporal = temporal_flicker(x, y)
        if lp_nets is None:
            lp_nets, lp_notes = lpips_networks(min(x.shape[-2:]), device)
        perceptual = {}
        if lp_nets:
            xf, yf = (v.transpose(1, 2).flatten(0, 1).to(device) for v in (x, y))  # (B*T, 3, H, W)
            with torch.inference_mode():
                for key, lp in lp_nets.items():
                    perceptual[key] = lp(xf, yf).view(x.shape[0], x.shape[2]).mean(1).cpu()  # (B,)
        psnr_t = psnr.sum(0) if psnr_t is None else psnr_t + psnr.sum(0)
        ssim_t = ssim.sum(0) if ssim_t is None else ssim_t + ssim.sum(0)
        for j in range(x.shape[0]):
            rows.append({"index": len(rows), "key": keys[j] if keys else None, "psnr": float(psnr[j].mean()),
                         "ssim": float(ssim[j].mean()),
                         **{k: (float(perceptual[k][j]) if k in perceptual else None)
                            for k in ("lpips_vgg", "lpips_alex")},
                         **{k: float(v[j]) for k, v in temporal.items()}})
        if fvd and x.shape[2] >= fvd_frames:
            if net is None:
                net = I3DFeatures(i3d, device, fvd_frames)
            real_f, fake_f = net(x), net(y)  # (B, D) I3D features
            real_stats = real_stats or GaussianStats(real_f.shape[1])
            fake_stats = fake_stats or GaussianStats(fake_f.shape[1])
            real_stats.update(real_f)
            fake_stats.update(fake_f)
        if len(shown) < strip_clips:
            shown += list(zip(x[: strip_clips - len(shown)], y[: strip_clips - len(shown)]))
        bar.update(x.shape[0])
    bar.close()
    if not rows:
        raise ValueError("evaluate_videos got no clips")
    n = len(rows)
    fvd_value, notes = None, []
    if fvd:
        if shape[1] < fvd_frames:
            fvd_note = (f"rFVD skipped: the clips have {shape[1]} frames, the I3D protocol takes {fvd_frames} "
                        "(evaluate longer clips for rFVD)")
        elif n < 2 and reference_stats is None:
            fvd_note = "rFVD skipped: it needs at least 2 clips"
        elif reference_stats is not None:
            fvd_value = reference_stats.distance(fake_stats, "I3D")
        else:
            fvd_value = real_stats.distance(fake_stats)
        if fvd_value is not None and n < FEW_FVD_CLIPS:
            notes.append(f"rFVD on {n} clips (fewer than {FEW_FVD_CLIPS}) is strongly biased upwards: compare it "
                         "only with rFVDs of the same clip count and protocol")
    notes = lp_notes + notes
    for note in ([fvd_note] if fvd_note else []) + notes:
        log.warning(note)
    mean = lambda k: sum(r[k] for r in rows) / n
    maybe_mean = lambda k: mean(k) if rows[0][k] is not None else None  # noqa: E731
    result = {
        "name": name, "clips": n, "frames": shape[1], "height": shape[2], "width": shape[3],
        "psnr": mean("psnr"), "ssim": mean("ssim"), "lpips_vgg": maybe_mean("lpips_vgg"),
        "lpips_alex": maybe_mean("lpips_alex"), "flicker": mean("flicker"),
        "motion_real": mean("motion_real"), "motion_fake": mean("motion_fake"),
        "psnr_per_frame": (psnr_t / n).tolist(), "ssim_per_frame": (ssim_t / n).tolist(),
        "fvd": fvd_value, "fvd_note": fvd_note, "notes": notes, "skipped": list(skipped or []),
        "fvd_protocol": ({**protocol(net, n, fps), "reference_stats": (reference_stats.describe()
                          if reference_stats is not None else f"the {n} original clips")}
                         if net is not None else None),
        "protocol": {**{k: {**v, "images": f"{n} clips x {shape[1]} frames"}
                        for k, v in lpips_protocol(lp_nets or {}, n, shape[2]).items()},
                     **({"fvd": None} if net is None else {})},
    }
    if net is not None:
        result["protocol"]["fvd"] = result["fvd_protocol"]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "video_metrics.json").write_text(json.dumps({**result, "per_clip": rows}, indent=2))
        with open(out / "video_metrics.csv", "w", newline="") as f:
            for line in protocol_lines(result["protocol"]):
                f.write(f"# {line}\n")
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        save_frame_strip(shown, out / "video_frames.png", strip_frames, title=f"{name}: original (upper) vs "
                         f"reconstruction (lower), PSNR {result['psnr']:.2f} dB, flicker {result['flicker']:.2f}")
        result["files"] = [str(out / f) for f in ("video_metrics.json", "video_metrics.csv", "video_frames.png")]
    return result


def save_frame_strip(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: str | Path, frames: int = 8,
                     title: str | None = None) -> Path:
    """A PNG with two rows per clip, the original's frames above the reconstruction's; `pairs` holds
    (original, reconstruction) videos (3, T, H, W) and `frames` evenly spaced frames of each are shown."""
    from vistok.metrics.report import save_image_grid  # matplotlib, only when a figure is written

    t = pairs[0][0].shape[1]
    idx = torch.linspace(0, t - 1, min(frames, t)).round().long().unique()
    rows = [v for pair in pairs for v in pair]  # original, reconstruction, original, ...
    columns = [torch.stack([v[:, int(k)] for v in rows]) for k in idx]  # each (2 * clips, 3, H, W)
    return save_image_grid(columns, path, [f"t={int(k)}" for k in idx], title=title)
