"""`vistok reconstruct`: a folder of images (or videos) encoded and decoded, with the mean PSNR (`vistok.decode`)."""

from __future__ import annotations

from vistok.commands.args import add_decode_options, add_model, load_decoding_model, parser


def main(argv: list[str]) -> None:
    p = parser("vistok reconstruct", "Encode and decode a folder of images (resized and centre-cropped to the "
               "model's size, as encode does); write the reconstructions as PNGs and print the mean PSNR.")
    add_model(p)
    p.add_argument("--input", required=True,
                   help="image folder (recursive); a video model takes videos and images (one-frame videos)")
    p.add_argument("--output", required=True,
                   help="directory for the PNGs, mirroring the input's subfolders (new or empty unless --overwrite)")
    add_decode_options(p)
    a = p.parse_args(argv)
    from pathlib import Path

    from vistok.decode import output_dir, reconstruct_images, reconstruct_videos

    root, output = Path(a.input), Path(a.output)
    if output.is_dir() and any(output.iterdir()) and not a.overwrite:
        output_dir(output, a.overwrite)
    if not root.is_dir():
        raise FileNotFoundError(f"--input {root}: no such folder")
    tok, sampling = load_decoding_model(a)
    if tok.input_spec.is_video:
        print(reconstruct_videos(tok, root, output, a.num_tokens, a.fps, a.video_format, a.overwrite, **sampling))
    else:
        print(reconstruct_images(tok, root, output, a.num_tokens, a.batch_size, a.overwrite, **sampling))
