"""`vistok ladder`: one picture of the reconstructions at K = 1, 2, 4, ..., N tokens (`vistok.ladder`)."""

from __future__ import annotations

from pathlib import Path

from vistok.commands.args import add_device, add_model, add_sampling, load_model, parser
from vistok.commands.args import sampling as sampling_args


def main(argv: list[str]) -> None:
    p = parser("vistok ladder", "Decode images at K = 1, 2, 4, ..., N tokens.")
    add_model(p)
    p.add_argument("--input", required=True, nargs="+",
                   help="image file(s); centre-cropped to the model's size (a video model: one video)")
    p.add_argument("--output", required=True, help="PNG to write (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    add_device(p)
    add_sampling(p)
    a = p.parse_args(argv)
    if Path(a.output).exists() and not (a.overwrite and Path(a.output).is_file()):
        raise FileExistsError(f"--output {a.output} exists; choose another file or pass --overwrite to replace it"
                              if Path(a.output).is_file() else f"--output {a.output} exists and is not a file")
    import torch

    from vistok.data.images import load_rgb, pil_to_tensor, resize_crop
    from vistok.ladder import save_ladder, save_video_ladder

    tok = load_model(a)
    sampling = sampling_args(a)
    if tok.input_spec.is_video:
        from vistok.data.model_clips import load_model_clip

        if len(a.input) != 1:
            raise ValueError("a video model's ladder takes one video (or image) file as --input")
        quality = save_video_ladder(tok, load_model_clip(a.input[0], tok.input_spec).video, a.output, **sampling)
        print("K     " + " ".join(f"{k:>6d}" for k in quality))
        print("PSNR  " + " ".join(f"{q:6.2f}" for q in quality.values()))
        print(f"wrote {a.output}")
        return
    images = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), tok.input_spec.side)) for f in a.input])
    quality = save_ladder(tok, images.to(tok.device), a.output, **sampling)
    print("K     " + " ".join(f"{k:>6d}" for k in quality))
    print("PSNR  " + " ".join(f"{q:6.2f}" for q in quality.values()))
    print(f"wrote {a.output}")
