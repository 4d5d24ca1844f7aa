"""`vistok export`: a `vistok fit` checkpoint -> an export directory (`vistok.saving`)."""

from __future__ import annotations

from vistok.commands.args import parser


def main(argv: list[str]) -> None:
    p = parser("vistok export", "Write a Hugging-Face-style export directory (atomically: a temporary "
               "directory renamed into place).")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit`")
    p.add_argument("--output", required=True, help="directory to write; must not exist or be empty")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory at --output")
    a = p.parse_args(argv)
    from vistok.saving import export_checkpoint

    out = export_checkpoint(a.model, a.output, overwrite=a.overwrite)
    print(f"exported {a.model} -> {out}")
