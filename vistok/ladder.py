"""Token ladder: images decoded from their first K = 1, 2, 4, ..., N tokens, side by side.

`vistok ladder --model M --input IMG [IMG ...] --output ladder.png` shows coarse-to-fine at a glance.

A video model takes one video (or image) file and writes a strip of frames per prefix: a 1D model (LARP style)
one row per K = 1, 2, 4, ..., N; a grid model (OmniTokenizer style) one row per latent-frame prefix (the first
j latent frames decode the first 1 + 4(j - 1) frames; frames a prefix does not reach are left grey).
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


@torch.no_grad()
def save_video_ladder(tok, video: torch.Tensor, path: str | Path, frames: int = 8, **sampling) -> dict[int, float]:
    """Write the ladder of one clip (3, T, H, W) in [-1, 1]: the input's frames, then the frames decoded from each
    prefix; returns the mean per-frame PSNR of each prefix (over the frames it decodes) by K."""
    from vistok.metrics.video import per_frame_psnr_ssim

    x = video[None].to(tok.device)  # (1, 3, T, H, W)
    ids = tok.encode(x)
    t = x.shape[2]
    if tok.frame_tokens is not None:
        ks = [j * tok.frame_tokens for j in range(1, ids.shape[1] // tok.frame_tokens + 1)]
    else:
        ks = pow2_lengths(tok.max_tokens)
    rows, quality = [x[0].cpu()], {}
    for k in ks:
        y = tok.decode(ids[:, :k], **sampling)[0].cpu()  # (3, T_k, H, W): T_k <= T for a grid prefix
        quality[k] = float(per_frame_psnr_ssim(x[:, :, : y.shape[1]].cpu(), y[None])[0].mean())
        if y.shape[1] < t:
            y = torch.cat([y, torch.zeros(3, t - y.shape[1], *y.shape[2:])], dim=1)
        rows.append(y)
    idx = torch.linspace(0, t - 1, min(frames, t)).round().long().unique()
    columns = [torch.stack([r[:, int(i)] for r in rows]) for i in idx]  # each (rows, 3, H, W)
    what = "latent frames" if tok.frame_tokens is not None else "tokens"
    labels = ["input"] + [f"K={k}" + (f" ({k // tok.frame_tokens} lf)" if tok.frame_tokens else "")
                          + f"\n{quality[k]:.1f} dB" for k in ks]
    save_image_grid(columns, path, [f"t={int(i)}" for i in idx], title=f"token ladder: first K {what}",
                    row_labels=labels)
    return quality


def ladder_main(argv: list[str]) -> None:
    from vistok.checkpoint import load_tokenizer
    from vistok.cli import finite_float, parser, positive_int
    from vistok.devices import AUTO, resolve_device
    from vistok.devices import HELP as DEVICE_HELP

    p = parser("vistok ladder", "Decode images at K = 1, 2, 4, ..., N tokens.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, nargs="+",
                   help="image file(s); centre-cropped to the model's size (a video model: one video)")
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
    sampling = {k: v for k, v in dict(steps=a.steps, guidance_scale=a.guidance, seed=a.seed).items() if v is not None}
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
    quality = save_ladder(tok, images.to(device), a.output, **sampling)
    print("K     " + " ".join(f"{k:>6d}" for k in quality))
    print("PSNR  " + " ".join(f"{q:6.2f}" for q in quality.values()))
    print(f"wrote {a.output}")
