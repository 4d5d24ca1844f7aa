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
Run `vistok <command> --help` for the options of each command."""


def export_main(argv: list[str]) -> None:
    from vistok.checkpoint import export_checkpoint

    p = argparse.ArgumentParser(prog="vistok export", description="Write a Hugging-Face-style export directory.")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit`")
    p.add_argument("--output", required=True, help="directory to write")
    a = p.parse_args(argv)
    out = export_checkpoint(a.model, a.output)
    print(f"exported {a.model} -> {out}")


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
    else:
        print(f"vistok: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
