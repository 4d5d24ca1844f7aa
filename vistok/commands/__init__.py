"""The `vistok` commands: one module per verb, listed once in `COMMANDS`.

`vistok.cli` dispatches through this table and prints it as `vistok --help`; each entry names the function that
runs the command (`main(argv)` of its module unless said otherwise). Adding a command is adding a module here and
one row below. Command modules import their heavy dependencies inside `main`, so `vistok <cmd> --help` stays fast,
and they never import `vistok.cli` (the shared argument types are in `vistok.commands.args`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module" (its `main`) or "module:function", relative to this package
    help: str

    def load(self) -> Callable[[list[str]], None]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function or "main")


COMMANDS: tuple[Command, ...] = (
    Command("fit", "fit:fit", "train a tokenizer from a config (LightningCLI): vistok fit --config configs/demo.yaml"),
    Command("validate", "fit:validate", "run validation on a trained checkpoint"),
    Command("export", "export", "write an export directory from a checkpoint: vistok export --model last.ckpt "
            "--output DIR"),
    Command("eval", "evaluate", "rFID/PSNR/SSIM per token count vs JPEG/WebP (video models: per-frame PSNR/SSIM, "
            "flicker, rFVD): vistok eval --model DIR --input sample --output DIR"),
    Command("encode", "encode", "encode images (or videos) to token shards: vistok encode --model DIR --input FOLDER "
            "--output SHARDS"),
    Command("verify", "verify", "check token shards against their manifest (hashes, counts, ids): vistok verify "
            "SHARDS"),
    Command("shards", "shards", "token shard tools: vistok shards to-memmap SHARDS OUT (one flat token file, offsets, "
            "labels and a metadata table for AR training)"),
    Command("import", "importing", "an official released checkpoint (TiTok, One-D-Piece, FlexTok, OmniTokenizer, "
            "LARP) as a vistok export: vistok import omnitokenizer --checkpoint CKPT --output DIR"),
    Command("ladder", "ladder", "decode at K = 1, 2, 4, ..., N tokens: vistok ladder --model DIR --input a.jpg "
            "--output l.png"),
    Command("decode", "decode", "token shards or a .npy of ids to PNGs: vistok decode --model DIR --input SHARDS "
            "--output PNGS"),
    Command("reconstruct", "reconstruct", "encode + decode an image folder, PNGs and mean PSNR: vistok reconstruct "
            "--model DIR --input FOLDER --output PNGS"),
    Command("serve", "serve", "encode/decode over HTTP with a demo page: vistok serve --model DIR [--port 8000]"),
    Command("weights", "weights", "fetch and convert the LPIPS / I3D metric weights into the cache (make install "
            "runs it): vistok weights fetch [--from DIR]"),
)

BY_NAME = {c.name: c for c in COMMANDS}


def usage() -> str:
    """`vistok --help`: the table above."""
    import textwrap

    width = max(len(c.name) for c in COMMANDS) + 2
    lines = ["usage: vistok <command> [options]", "", "commands:"]
    for c in COMMANDS:
        text = textwrap.wrap(c.help, 118 - width - 2)
        lines.append(f"  {c.name:<{width}}{text[0]}")
        lines += [f"  {'':<{width}}{t}" for t in text[1:]]
    lines += ["Run `vistok <command> --help` for the options of each command; `vistok --version` prints the version.",
              "A user error prints one line and exits 1; --debug (with any command) shows the traceback."]
    return "\n".join(lines)
