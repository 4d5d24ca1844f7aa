"""Training losses as pure functions (they never log)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vistok.tokenizers.adaptive import per_image_psnr


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, l1: float = 0.0, l2: float = 1.0) -> torch.Tensor:
    """Weighted L1 + L2 in fp32."""
    recon, target = recon.float(), target.float()
    loss = recon.new_zeros(())
    if l1:
        loss = loss + l1 * F.l1_loss(recon, target)
    if l2:
        loss = loss + l2 * F.mse_loss(recon, target)
    return loss


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean PSNR in dB over the batch for images in [-1, 1], computed per image."""
    return per_image_psnr(recon, target).mean()
