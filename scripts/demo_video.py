"""`make demo-video`: train a tiny video tokenizer on the embedded training clips, export it, and measure it on the
held-out clips.

Training: `configs/omni_tiny.yaml` (stage 1, 32 px crops of the bundled photos, a one-frame video each) and then
`configs/omni_tiny_joint.yaml` (stage 2 from stage 1's checkpoint: one batch of 8 nine-frame clips of
`sample-clips`, then one of 16 images, in turn), a fixed number of steps each, fp32 on every machine, so the
figures do not depend on the machine's speed or load. Held-out: the `val` split of `sample-clips` (camera moves
over coffee, rocket and Grace Hopper, never trained on), 9 frames at 32 px, 8 fps.

Writes runs/demo_video/: stage1/ and joint/ (the two runs), export/, eval/ (video_metrics.json/.csv and
video_frames.png: held-out frames, original above reconstruction), ladder.png (one held-out clip decoded from its
first 1, 2, 3 latent frames), shards/ (the held-out clips as token shards), summary.json; prints a summary next
to a per-frame baseline (each frame 4x area-downsampled and bilinearly upsampled).
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

ROOT = Path(__file__).resolve().parents[1]
STAGES = (("stage1", "omni_tiny.yaml", 400), ("joint", "omni_tiny_joint.yaml", 600))
DEMO_CONFIG = "demo_video.yaml"


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo_video")
    p.add_argument("--stage1-steps", type=int, default=STAGES[0][2])
    p.add_argument("--joint-steps", type=int, default=STAGES[1][2])
    p.add_argument("--config", default=None, help="the joint stage's config (default configs/omni_tiny_joint.yaml)")
    p.add_argument("--joint-args", nargs="*", default=[], help="extra `vistok fit` arguments of the joint stage")
    p.add_argument("--skip-training", action="store_true", help="reuse the joint run's checkpoint under --out")
    a = p.parse_args()
    out = Path(a.out)
    t0 = time.time()
    ckpt = out / "joint" / "checkpoints" / "last.ckpt"
    if not a.skip_training:
        init = []
        if a.stage1_steps > 0:  # 0: the joint stage from its own start
            stage1 = _fit(ROOT / "configs" / STAGES[0][1], out / "stage1", a.stage1_steps, [])
            init = [f"--model.init_from={stage1}"]
        joint = Path(a.config) if a.config else ROOT / "configs" / STAGES[1][1]
        ckpt = _fit(joint, out / "joint", a.joint_steps, init + a.joint_args)
    train_s = time.time() - t0

    import torch.nn.functional as F

    from vistok import Tokenizer
    from vistok.checkpoint import export_checkpoint
    from vistok.data.sample_clips import clip_dir
    from vistok.evaluate_video import evaluate_video_model
    from vistok.ladder import save_video_ladder
    from vistok.metrics.video import evaluate_videos
    from vistok.shards.writer import encode_to_shards

    # 1. Export the last checkpoint's weights.
    export_checkpoint(ckpt, out / "export", overwrite=True)
    tok = Tokenizer.from_pretrained(out / "export").eval()

    # 2. Held-out clips: per-frame PSNR / SSIM, flicker, the frames grid (`vistok eval` on a video model).
    result = evaluate_video_model(tok, "sample-clips", out / "eval", progress=False)

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
    summary = {
        "model": "omni-tiny (configs/omni_tiny.yaml then omni_tiny_joint.yaml)",
        "steps": {"stage1": a.stage1_steps, "joint": a.joint_steps}, "train_seconds": round(train_s, 1),
        "total_seconds": round(total_s, 1), "clips": result["clips"], "frames": result["frames"],
        "size": result["height"], "tokens_per_clip": result["tokens"], "token_grid": result["token_grid"],
        "bits_per_token": round(float(torch.log2(torch.tensor(float(tok.codebook_size)))), 2),
        "psnr": result["psnr"], "ssim": result["ssim"], "flicker": result["flicker"],
        "motion_real": result["motion_real"], "motion_fake": result["motion_fake"],
        "psnr_per_frame": result["psnr_per_frame"],
        "baseline_4x_down_up": {k: baseline[k] for k in ("psnr", "ssim", "flicker", "motion_fake")},
        "baseline_mean_colour": {k: flat_mean[k] for k in ("psnr", "ssim", "flicker", "motion_fake")},
        "shards": shards.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    per_frame = " ".join(f"{v:.1f}" for v in result["psnr_per_frame"])
    print(f"""
video demo: omni-tiny, {a.stage1_steps} image steps then {a.joint_steps} joint steps (fp32), {train_s:.0f} s training,
{total_s:.0f} s in all
held-out sample clips: {result['clips']} clips of {result['frames']} frames at {result['height']} px, \
{result['tokens']} tokens each (grid {result['token_grid']}, {tok.codebook_size} codes)
  tokenizer     PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.3f}  flicker {result['flicker']:.2f}  \
motion {result['motion_real']:.2f} -> {result['motion_fake']:.2f}
  4x down-up    PSNR {baseline['psnr']:.2f} dB  SSIM {baseline['ssim']:.3f}  flicker {baseline['flicker']:.2f}  \
motion {baseline['motion_real']:.2f} -> {baseline['motion_fake']:.2f}
  mean colour   PSNR {flat_mean['psnr']:.2f} dB  SSIM {flat_mean['ssim']:.3f}  (each clip's mean colour, 3 numbers)
  PSNR per frame: {per_frame}
  {result['fvd_note'] or ''}
token shards: {shards.line()}
wrote {out}/eval/video_frames.png (original above reconstruction), {out}/ladder.png, {out}/summary.json""")


if __name__ == "__main__":
    main()
