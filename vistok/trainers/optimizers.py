"""The optimizers of `TokenizerSystem`: AdamW for the tokenizer, with per-name learning-rate scales and no weight
decay on norms, biases and learned positions/tokens (ViT practice), and AdamW for the discriminators (`gan:`
settings, the tokenizer's where unset). The schedules are the system's (`vistok.trainers.schedule`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vistok.trainers.adversarial import GANSettings


def tokenizer_optimizer(tokenizer: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                        lr_scales: dict[str, float] | None) -> torch.optim.AdamW:
    """One parameter group per (lr, weight decay). `lr_scales` maps a name fragment to a multiplier (the first
    fragment found in a parameter's name wins); a scale of 0 freezes the parameter."""
    scales = dict(lr_scales or {})
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in tokenizer.named_parameters():
        scale = next((v for k, v in scales.items() if k in name), 1.0)
        if scale == 0:
            p.requires_grad_(False)  # frozen: no gradient computed, and counted as non-trainable
        if not p.requires_grad:
            continue
        wd = 0.0 if p.ndim < 2 or name.endswith(("_pos", "_token", "_tokens")) else weight_decay
        groups.setdefault((lr * scale, wd), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()],
                             lr=lr, betas=betas)


def discriminator_optimizer(discriminators: Iterable[nn.Module], settings: GANSettings, lr: float,
                            weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """One AdamW over every discriminator's parameters, with `gan.lr`, `gan.betas`, `gan.weight_decay` where set."""
    return torch.optim.AdamW([p for d in discriminators for p in d.parameters()],
                             lr=lr if settings.lr is None else settings.lr,
                             betas=tuple(betas if settings.betas is None else settings.betas),
                             weight_decay=weight_decay if settings.weight_decay is None else settings.weight_decay)
