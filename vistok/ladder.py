"""Token ladder: images decoded from their first K = 1, 2, 4, ..., N tokens, side by side.

`vistok ladder --model M --input IMG [IMG ...] --output ladder.png` shows coarse-to-fine at a glance.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vistok.data.images import load_rgb, pil_to_tensor, resize_crop
from vistok.metrics.psnr import per_image_psnr
from vistok.metrics.report import save_image_grid
from vistok.tokenizers.prefixes import pow2_lengths, prefix_reconstructions


@torch.no_grad()
def save_ladder(tokenizer, images: torch.Tensor, path: str | Path, **sampling) -> dict[int, float]:
    """Write the ladder PNG for images (B, 3, H, W) in [-1, 1]; returns mean PSNR per K."""
    ks = pow2_lengths(tokenizer.max_tokens)
    columns, quality = [images], {}
    for k, recon in prefix_reconstructions(tokenizer, images, ks, **sampling):
        columns.append(recon)
        quality[k] = float(per_image_psnr(recon, images).mean())
    labels = ["input"] + [f"K={k}\n{quality[k]:.1f} dB" for k in ks]
    save_image_grid(columns, path, labels, title="token ladder: first K tokens")
    return quality


def ladder_main(argv: list[str]) -> None:
    from vistok.checkpoint import load_tokenizer
    from vistok.cli import finite_float, parser, positive_int
    from vistok.devices import AUTO, resolve_device
    from vistok.devices import HELP as DEVICE_HELP

    p = parser("vistok ladder", "Decode images at K = 1, 2, 4, ..., N tokens.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, nargs="+", help="image file(s); centre-cropped to the model's size")
    p.add_argument("--output", required=True, help="PNG to write (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--device", default=AUTO, help=DEVICE_HELP)
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps (generative decoders)")
    p.add_argument("--guidance", type=finite_float, default=None, help="guidance scale (generative decoders)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if Path(a.output).exists() and not (a.overwrite and Path(a.output).is_file()):
        raise FileExistsError(f"--output {a.output} exists; choose another file or pass --overwrite to replace it"
                              if Path(a.output).is_file() else f"--output {a.output} exists and is not a file")
    device = resolve_device(a.device)
    tok = load_tokenizer(a.model, device)
    images = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), tok.input_spec.side)) for f in a.input])
    sampling = {k: v for k, v in dict(steps=a.steps, guidance_scale=a.guidance, seed=a.seed).items() if v is not None}
    quality = save_ladder(tok, images.to(device), a.output, **sampling)
    print("K     " + " ".join(f"{k:>6d}" for k in quality))
    print("PSNR  " + " ".join(f"{q:6.2f}" for q in quality.values()))
    print(f"wrote {a.output}")
