"""Training losses as pure functions (they never log)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, l1: float = 0.0, l2: float = 1.0,
                        colour: float = 0.0) -> torch.Tensor:
    """Weighted L1 + L2 in fp32, plus `colour` x the squared error of each image's mean colour (B, 3): pixel
    L2 weighs a picture's mean colour as one of its H*W*3 numbers, and a tokenizer that shifts it is what users
    notice first (a blue sky turned grey)."""
    recon, target = recon.float(), target.float()
    loss = recon.new_zeros(())
    if l1:
        loss = loss + l1 * F.l1_loss(recon, target)
    if l2:
        loss = loss + l2 * F.mse_loss(recon, target)
    if colour:
        loss = loss + colour * F.mse_loss(recon.mean((-2, -1)), target.mean((-2, -1)))
    return loss
