"""The PSNR vistok reports everywhere: eval, adaptive encoding (`encode --target-psnr`), the token ladder,
`vistok reconstruct`, the demo and the training / validation logs.

Per image (then averaged, as TiTok / FlexTok tables do, not from a dataset-wide MSE), on 8-bit pixels: both
images are quantised with `vistok.data.images.to_uint8` first, as a saved PNG would be, so a reconstruction is
judged by what a user gets. Peak 255. Identical images have an infinite PSNR; it is capped at `PSNR_CAP`
(100 dB) so that means stay finite.
"""

from __future__ import annotations

import torch

from vistok.data.images import to_uint8

PSNR_CAP = 100.0


def per_image_psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) float32 PSNR in dB of (B, ...) images in [-1, 1], on their 8-bit quantisation, capped at 100 dB."""
    if recon.shape != target.shape:
        raise ValueError(f"reconstructed and target images differ in shape: {tuple(recon.shape)} vs "
                         f"{tuple(target.shape)}")
    diff = to_uint8(recon).float() - to_uint8(target.to(recon.device)).float()  # whole 8-bit levels
    mse = diff.pow(2).flatten(1).mean(1)  # (B,)
    return (10 * torch.log10(255.0**2 / mse)).clamp(max=PSNR_CAP)  # mse 0 -> inf -> the cap
