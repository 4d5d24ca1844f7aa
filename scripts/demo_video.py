"""`make demo-video`: train a tiny video tokenizer on the embedded training clips, export it, and measure it on the
held-out clips.

Training: `configs/demo_video.yaml`, one stage: omni-tiny with a per-patch linear path, PCA-initialised on
training clips before step 0 and kept fixed, then 8 procedural nine-frame clips (`sample-moves`: a fresh camera
move over a random crop of a training photo) and 16 image crops of the same photos in turn, a fixed number of
steps, fp32 on every machine, so the figures do not depend on the machine's speed or load. Held-out: the `val`
split of `sample-clips` (camera moves over coffee, rocket and Grace Hopper, real mp4 files, never trained on),
9 frames at 32 px, 8 fps.

rFVD: the Kinetics-400 I3D protocol takes 16 frames, so the same held-out clips are read again at 17 frames
(1 + 4k, which the model accepts) for it (eval_fvd/); 12 clips is far below a stable FVD: compare it only with
runs of the same protocol.

Writes runs/demo_video/: train/ (the run), export/, eval/ (video_metrics.json/.csv and
video_frames.png: held-out frames, original above reconstruction), ladder.png (one held-out clip decoded from its
first 1, 2, 3 latent frames), shards/ (the held-out clips as token shards), summary.json; prints a summary next
to two baselines: per frame, each frame 4x area-downsampled and bilinearly upsampled; and each clip's mean colour.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo_video.yaml"
STEPS = 1000
FVD_FRAMES = 17


def _fit(config: Path, out: Path, steps: int, extra: list[str]) -> Path:
    for stale in (out / "checkpoints", out / "metrics.csv"):  # a fresh run each time
        if stale.exists():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    cmd = [str(Path(sys.executable).with_name("vistok")), "fit", "--config", str(config),
           f"--trainer.default_root_dir={out}", f"--trainer.max_steps={steps}",
           f"--trainer.val_check_interval={steps}", "--trainer.precision=32-true",
           "--trainer.enable_progress_bar=false", *extra]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    ckpt = out / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"no checkpoint at {ckpt}")
    return ckpt


def _f(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo_video")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--config", default=str(CONFIG), help="the training config (default configs/demo_video.yaml)")
    p.add_argument("--fit-args", nargs="*", action="extend", default=[],
                   help="extra `vistok fit` arguments, e.g. --fit-args=--model.lr=3e-4")
    p.add_argument("--fvd-clips", type=int, default=None,
                   help="held-out clips for rFVD (default: all 12; the I3D pass takes ~10 s per clip on a CPU)")
    p.add_argument("--skip-training", action="store_true", help="reuse the run's checkpoint under --out")
    a = p.parse_args()
    out = Path(a.out)
    t0 = time.time()
    ckpt = out / "train" / "checkpoints" / "last.ckpt"
    if not a.skip_training:
        ckpt = _fit(Path(a.config), out / "train", a.steps, a.fit_args)
    train_s = time.time() - t0

    import torch.nn.functional as F

    from vistok import Tokenizer
    from vistok.data.sample_clips import clip_dir
    from vistok.evaluate.videos import evaluate_video_model
    from vistok.ladder import save_video_ladder
    from vistok.metrics.video import evaluate_videos
    from vistok.saving import export_checkpoint
    from vistok.shards.writer import encode_to_shards

    # 1. Export the last checkpoint's weights.
    export_checkpoint(ckpt, out / "export", overwrite=True)
    tok = Tokenizer.from_pretrained(out / "export").eval()

    # 2. Held-out clips: per-frame PSNR / SSIM, flicker, the frames grid (`vistok eval` on a video model).
    result = evaluate_video_model(tok, "sample-clips", out / "eval", progress=False)
    # rFVD with the built-in I3D on the same held-out clips at 17 frames (the protocol's 16 need more than 9).
    fvd = evaluate_video_model(tok, "sample-clips", out / "eval_fvd", frames=FVD_FRAMES, lpips=False,
                               limit=a.fvd_clips, progress=False)

    # 3. A per-frame baseline on the same clips: 4x area down, bilinear up (16 numbers per 8 x 8 block of pixels).
    def down_up(x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        f = F.interpolate(F.interpolate(f, scale_factor=0.25, mode="area"), size=(h, w), mode="bilinear")
        return f.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4).clamp(-1, 1)

    from torch.utils.data import DataLoader

    from vistok.data.sample_clips import SampleClips
    from vistok.data.videos import ClipSpec, collate_videos

    val = SampleClips("val", ClipSpec(result["frames"], tok.input_spec.side, fps=8))
    # The baselines have no FVD either; the model's evaluation above already said why, once.
    logging.getLogger("vistok.metrics").setLevel(logging.ERROR)
    baseline = evaluate_videos(down_up, DataLoader(val, batch_size=4, collate_fn=collate_videos), progress=False,
                               name="4x down-up")

    def flat(x: torch.Tensor) -> torch.Tensor:  # each clip's mean colour everywhere (3 numbers per clip)
        return x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x)

    flat_mean = evaluate_videos(flat, DataLoader(val, batch_size=4, collate_fn=collate_videos), progress=False,
                                name="mean colour")

    # 4. The ladder of one held-out clip and the token shards of every held-out clip file.
    save_video_ladder(tok, val[0]["video"], out / "ladder.png")
    shutil.rmtree(out / "shards", ignore_errors=True)
    shards = encode_to_shards(tok, [str(clip_dir() / "val")], out / "shards", workers=0, progress=False)

    total_s = time.time() - t0
    bits = math.log2(tok.codebook_size)
    first_bits = result["token_grid"][1] * result["token_grid"][2] * bits  # latent frame 0 is frame 0 alone
    summary = {
        "model": f"omni-tiny with PCA-initialised per-patch linear paths ({Path(a.config).name})",
        "steps": a.steps, "fit_args": a.fit_args, "train_seconds": round(train_s, 1),
        "total_seconds": round(total_s, 1), "clips": result["clips"], "frames": result["frames"],
        "size": result["height"], "tokens_per_clip": result["tokens"], "token_grid": result["token_grid"],
        "bits_per_token": round(bits, 2), "bits_per_clip": round(result["tokens"] * bits, 1),
        "psnr": result["psnr"], "ssim": result["ssim"], "lpips_vgg": result["lpips_vgg"],
        "lpips_alex": result["lpips_alex"], "flicker": result["flicker"],
        "rfvd": fvd["fvd"], "rfvd_protocol": fvd["fvd_protocol"],
        "motion_real": result["motion_real"], "motion_fake": result["motion_fake"],
        "psnr_per_frame": result["psnr_per_frame"],
        "baseline_4x_down_up": {k: baseline[k] for k in ("psnr", "ssim", "lpips_vgg", "flicker", "motion_fake")},
        "baseline_mean_colour": {k: flat_mean[k] for k in ("psnr", "ssim", "lpips_vgg", "flicker", "motion_fake")},
        "shards": shards.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    per_frame = " ".join(f"{v:.1f}" for v in result["psnr_per_frame"])
    print(f"""
video demo: omni-tiny + PCA-initialised patch paths, {a.steps} steps (fp32), {train_s:.0f} s training,
{total_s:.0f} s in all
held-out sample clips: {result['clips']} clips of {result['frames']} frames at {result['height']} px, \
{result['tokens']} tokens each (grid {result['token_grid']}, {tok.codebook_size} codes: \
{result['tokens'] * bits:.0f} bits a clip, {first_bits:.0f} for the first frame)
  tokenizer     PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.3f}  LPIPS-VGG {_f(result['lpips_vgg'])}  \
LPIPS-Alex {_f(result['lpips_alex'])}  flicker {result['flicker']:.2f}  \
motion {result['motion_real']:.2f} -> {result['motion_fake']:.2f}
  4x down-up    PSNR {baseline['psnr']:.2f} dB  SSIM {baseline['ssim']:.3f}  LPIPS-VGG {_f(baseline['lpips_vgg'])}  \
LPIPS-Alex {_f(baseline['lpips_alex'])}  flicker {baseline['flicker']:.2f}  \
motion {baseline['motion_real']:.2f} -> {baseline['motion_fake']:.2f}
  mean colour   PSNR {flat_mean['psnr']:.2f} dB  SSIM {flat_mean['ssim']:.3f}  LPIPS-VGG {_f(flat_mean['lpips_vgg'])}  \
(each clip's mean colour, 3 numbers)
  PSNR per frame: {per_frame}
  rFVD {_f(fvd['fvd'], '.1f')} on {fvd['clips']} held-out clips of {FVD_FRAMES} frames (Kinetics-400 I3D, first 16 \
frames at 224 px; few clips: biased upwards) {fvd['fvd_note'] or ''}
token shards: {shards.line()}
wrote {out}/eval/video_frames.png (original above reconstruction), {out}/ladder.png, {out}/summary.json""")


if __name__ == "__main__":
    main()
