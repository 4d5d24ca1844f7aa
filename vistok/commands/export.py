"""`vistok export`: a `vistok fit` checkpoint -> an export directory (`vistok.saving`)."""

from __future__ import annotations

from vistok.commands.args import parser


def main(argv: list[str]) -> None:
    p = parser("vistok export", "Write a Hugging-Face-style export directory (atomically: a temporary "
               "directory renamed into place).")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit`")
    p.add_argument("--output", required=True, help="directory to write; must not exist or be empty")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory at --output")
    p.add_argument("--eval", action="append", default=[], metavar="METRICS_JSON",
                   help="a `vistok eval` result of this model (metrics.json / video_metrics.json or its directory) "
                        "whose numbers and per-metric protocol go into the model card; repeatable")
    a = p.parse_args(argv)
    from vistok.metrics.protocol import load_result
    from vistok.saving import export_checkpoint

    evaluation = [load_result(path) for path in a.eval]  # a bad file fails before the (slow) checkpoint load
    out = export_checkpoint(a.model, a.output, overwrite=a.overwrite, evaluation=evaluation or None)
    print(f"exported {a.model} -> {out}")
