"""`vistok decode`: token shards or .npy files of ids -> a PNG (or mp4) per sample (`vistok.decode`)."""

from __future__ import annotations

from vistok.commands.args import add_decode_options, add_model, load_decoding_model, parser


def main(argv: list[str]) -> None:
    p = parser("vistok decode", "Decode token shards (or a .npy of ids) to one PNG per sample, named by its key.")
    add_model(p)
    p.add_argument("--input", required=True, nargs="+",
                   help="token shard directory (its manifest), shard urls / brace patterns, or .npy files of "
                        "integer ids, shape (K,) or (B, K)")
    p.add_argument("--output", required=True, help="directory for the PNGs (new or empty unless --overwrite)")
    add_decode_options(p)
    a = p.parse_args(argv)
    from collections.abc import Iterator
    from pathlib import Path

    import torch

    from vistok.data.model_clips import DEFAULT_FPS
    from vistok.decode import decode_to_pngs, output_dir, token_sequences

    output = Path(a.output)
    if output.is_dir() and any(output.iterdir()) and not a.overwrite:  # before the model load
        output_dir(output, a.overwrite)
    tok, sampling = load_decoding_model(a)
    infos: dict[str, dict] = {}
    sequences = token_sequences(a.input, tok.codebook_size, tok.frame_tokens if tok.input_spec.is_video else None,
                                infos)
    first = next(sequences, None)  # a bad input fails before the output directory is made
    if first is None:
        raise ValueError(f"--input {' '.join(a.input)}: no token sequences")
    output = output_dir(output, a.overwrite)

    def chained() -> Iterator[tuple[str, torch.Tensor]]:
        yield first
        yield from sequences

    n = decode_to_pngs(tok, chained(), output, a.num_tokens, a.batch_size, infos=infos,
                       default_fps=a.fps or DEFAULT_FPS, video_format=a.video_format, **sampling)
    print(f"decoded {n} samples -> {output}")
