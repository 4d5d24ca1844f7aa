"""Evaluation of a video model: per-frame PSNR / SSIM, temporal flicker and rFVD of its reconstructions
(`vistok.metrics.video.evaluate_videos`), written as video_metrics.json / .csv and video_frames.png.

Clips are the model's clip length (`token_grid_frames` of a grid model, the fixed length of a 1D one) at the
model's size: "sample-clips" (or "sample") reads the held-out embedded clips at 8 fps; a folder gives every video
(and image, a one-frame video padded to the length) read from its first frame, at `fps` (None: each file's
own), trimmed or padded with its last frame. rFVD uses the built-in Kinetics-400 I3D (`vistok.metrics.i3d`;
`--i3d PATH` for a TorchScript instead) on the first 16 frames: clips shorter than that have no rFVD, and one note
says why. Per-frame LPIPS-VGG / LPIPS-Alex are reported beside PSNR / SSIM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from vistok.evaluate.settings import EvalSettings

SAMPLE = ("sample-clips", "sample")


def is_video_model(path: str | Path) -> bool:
    """Whether an export directory (its tokens.json) or checkpoint holds a video model (frames rule != "1")."""
    import json

    from vistok.token_spec import input_spec

    spec_file = Path(path) / "tokens.json"
    if spec_file.is_file():
        return input_spec(json.loads(spec_file.read_text())).is_video
    from vistok.loading import load_tokenizer

    return load_tokenizer(path).input_spec.is_video


def model_clip_frames(tok: Any) -> int:
    """The clip length a video model is evaluated at: what it was built for."""
    return int(tok.encoder.num_frames)


def _folder_clips(tok: Any, root: Path, frames: int, fps: float | None, limit: int | None,
                  batch_size: int, skipped: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Batches of the folder's clips; every file that cannot be read is appended to `skipped` ({file, reason})
    and reported on the terminal."""
    from vistok.data.images import IMAGE_EXTENSIONS, no_images_error, scan_images
    from vistok.data.model_clips import load_model_clip
    from vistok.data.video_io import VIDEO_EXTENSIONS

    listing = scan_images(root, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    if not listing.files:
        raise no_images_error(listing)
    batch: list[torch.Tensor] = []
    keys: list[str] = []
    for f in listing.files[:limit]:
        try:
            clip = load_model_clip(f, tok.input_spec, fps=fps, length=frames)
        except OSError as e:
            print(f"skipping {e}")
            skipped.append({"file": str(f.relative_to(root)), "reason": str(e)})
            continue
        batch.append(clip.video)
        keys.append(str(f.relative_to(root)))
        if len(batch) == batch_size:
            yield {"video": torch.stack(batch), "key": keys}
            batch, keys = [], []
    if batch:
        yield {"video": torch.stack(batch), "key": keys}


def evaluate_video_model(tok: Any, source: str, output: str | Path, i3d: str | None = None,
                         num_tokens: int | None = None, fps: float | None = None, limit: int | None = None,
                         batch_size: int = 4, frames: int | None = None, progress: bool = True,
                         fvd: bool = True, lpips: bool = True, reference_stats: str | None = None,
                         **sampling: Any) -> dict[str, Any]:
    """Reconstruct `source`'s clips with `tok` (encode, keep `num_tokens`, decode) and measure them.
    `reference_stats`: an .npz of I3D mu / sigma replacing the originals' statistics in rFVD."""
    from torch.utils.data import DataLoader, Subset

    from vistok.data.sample_clips import CLIP_FPS, SampleClips
    from vistok.data.videos import ClipSpec, collate_videos
    from vistok.metrics.video import evaluate_videos

    skipped: list[dict[str, str]] = []  # filled while the clips are read, written into video_metrics.json
    if i3d is not None and not Path(i3d).is_file():
        raise FileNotFoundError(f"--i3d {i3d}: no such file (a Kinetics-400 I3D TorchScript; leave --i3d out for "
                                "the built-in I3D)")
    reference = None
    if reference_stats is not None:
        from vistok.metrics.reference_stats import load_reference_stats

        reference = load_reference_stats(reference_stats)
    frames = frames or model_clip_frames(tok)
    if num_tokens is not None and tok.frame_tokens is not None:
        raise ValueError("--num-tokens: a grid video model is evaluated on whole clips (its prefixes are shorter "
                         "clips); use `vistok ladder` for the latent-frame prefixes")
    if source in SAMPLE:
        ds = SampleClips("val", ClipSpec(frames, tok.input_spec.side, fps=fps or CLIP_FPS))
        if limit is not None:
            ds = Subset(ds, range(min(limit, len(ds))))
        clips: Any = DataLoader(ds, batch_size=batch_size, collate_fn=collate_videos)
    elif Path(source).is_dir():
        clips = _folder_clips(tok, Path(source), frames, fps, limit, batch_size, skipped)
    else:
        raise FileNotFoundError(f"--input {source}: a video model evaluates 'sample-clips' or a folder of videos")

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        return tok.decode(tok.encode(x, num_tokens=num_tokens), **sampling)

    start = time.perf_counter()
    k = tok.token_grid(frames)[0] * tok.frame_tokens if tok.frame_tokens else num_tokens or tok.max_tokens
    result = evaluate_videos(reconstruct, clips, i3d=i3d, fvd=fvd, reference_stats=reference,
                             fps=fps or (CLIP_FPS if source in SAMPLE else None), lpips=lpips, out_dir=output,
                             batch_size=batch_size,
                             device=tok.device, progress=progress, name=f"{type(tok.encoder).__name__}, K={k}",
                             skipped=skipped)
    result.update({"tokens": k, "token_grid": list(tok.token_grid(frames)) if tok.frame_tokens else [k],
                   "input": source, "wall_time_s": time.perf_counter() - start})
    return result


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def video_summary(result: dict[str, Any]) -> str:
    fvd = f"{result['fvd']:.2f}" if result.get("fvd") is not None else "n/a"
    lines = [f"{result['clips']} clips of {result['frames']} x {result['height']} x {result['width']}, "
             f"{result['tokens']} tokens each (grid {result['token_grid']})",
             f"PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.3f}  LPIPS-VGG {_f(result.get('lpips_vgg'))}  "
             f"LPIPS-Alex {_f(result.get('lpips_alex'))}  flicker {result['flicker']:.2f}  "
             f"motion {result['motion_real']:.2f} -> {result['motion_fake']:.2f}  rFVD {fvd}"]
    for note in ([result["fvd_note"]] if result.get("fvd_note") else []) + result.get("notes", []):
        lines.append(f"note: {note}")
    if result.get("skipped"):
        lines.append(f"skipped {len(result['skipped'])} unreadable file(s) (listed in video_metrics.json): "
                     f"{result['skipped'][0]['file']}{', ...' if len(result['skipped']) > 1 else ''}")
    return "\n".join(lines)


def evaluate_video(settings: EvalSettings) -> dict[str, Any]:
    """`evaluate(settings)` for a video model: one token count (`num_tokens` holds at most one), the sampler
    settings of the decoder, clips from `settings.input` ("sample" means the held-out sample clips)."""
    from vistok.devices import resolve_device
    from vistok.loading import load_tokenizer

    ks = settings.num_tokens or [None]
    if len(ks) != 1:
        raise ValueError("--num-tokens: a video model is evaluated at one token count")
    tok = load_tokenizer(settings.model, resolve_device(settings.device)).eval()
    sampling = {k: v for k, v in dict(steps=settings.steps, guidance_scale=settings.guidance).items() if v is not None}
    source = "sample-clips" if settings.input == "sample" else settings.input
    return evaluate_video_model(tok, source, settings.output, settings.i3d, ks[0], settings.fps, settings.limit,
                                settings.batch_size, progress=settings.progress, fvd=settings.fvd,
                                lpips=settings.perceptual, reference_stats=settings.reference_stats, **sampling)
