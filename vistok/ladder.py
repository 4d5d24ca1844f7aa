"""Token ladder: images decoded from their first K = 1, 2, 4, ..., N tokens, side by side.

`vistok ladder --model M --input IMG [IMG ...] --output ladder.png` shows coarse-to-fine at a glance.

A video model takes one video (or image) file and writes a strip of frames per prefix: a 1D model (LARP style)
one row per K = 1, 2, 4, ..., N; a grid model (OmniTokenizer style) one row per latent-frame prefix (the first
j latent frames decode the first 1 + 4(j - 1) frames; frames a prefix does not reach are left grey).
"""

from __future__ import annotations

from pathlib import Path

import torch

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
