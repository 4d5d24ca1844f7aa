"""`vistok export`: a `vistok fit` checkpoint -> an export directory (`vistok.saving`), or, with `--format titok`,
a TiTok / TA-TiTok / One-D-Piece in the official layout (`vistok.importers.titok.export_official`)."""

from __future__ import annotations

from vistok.commands.args import parser

FORMATS = ("vistok", "titok")


def main(argv: list[str]) -> None:
    p = parser("vistok export", "Write a Hugging-Face-style export directory (atomically: a temporary "
               "directory renamed into place), or with --format titok the files the official TiTok code loads.")
    p.add_argument("--model", required=True, help="Lightning .ckpt written by `vistok fit` (with --format titok also "
                   "a vistok export directory)")
    p.add_argument("--output", required=True, help="directory to write; must not exist or be empty")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory at --output")
    p.add_argument("--eval", action="append", default=[], metavar="METRICS_JSON",
                   help="a `vistok eval` result of this model (metrics.json / video_metrics.json or its directory) "
                        "whose numbers and per-metric protocol go into the model card; repeatable")
    p.add_argument("--format", choices=FORMATS, default="vistok",
                   help="vistok (default): a vistok export directory; titok: model.safetensors in the official "
                   "bytedance/1d-tokenizer layout and its config.json (TiTok, TA-TiTok and One-D-Piece models as "
                   "their authors built them)")
    a = p.parse_args(argv)
    from vistok.metrics.protocol import load_result

    if a.format == "titok":
        out = export_titok(a.model, a.output, a.overwrite)
        print(f"exported {a.model} -> {out} (official TiTok layout: model.safetensors, config.json)")
        return
    from vistok.saving import export_checkpoint

    evaluation = [load_result(path) for path in a.eval]  # a bad file fails before the (slow) checkpoint load
    out = export_checkpoint(a.model, a.output, overwrite=a.overwrite, evaluation=evaluation or None)
    print(f"exported {a.model} -> {out}")


def export_titok(model: str, output: str, overwrite: bool = False):
    """Load `model` (checkpoint or export directory) and write it in the official layout; a model that is not a
    TiTok-family architecture is refused before anything is written, saying what it is."""
    from vistok.importers.titok import export_official
    from vistok.loading import load_tokenizer

    tokenizer = load_tokenizer(model)
    parts = (type(tokenizer.encoder).__name__, type(tokenizer.quantizer).__name__, type(tokenizer.decoder).__name__)
    try:
        return export_official(tokenizer, output, overwrite=overwrite)
    except ValueError as e:
        raise ValueError(f"--format titok: {model} is not a TiTok-family model as the official code "
                         f"builds it (encoder {parts[0]}, quantizer {parts[1]}, decoder {parts[2]}): {e}") from None
