"""The adversarial phase of tokenizer training: the generator's and the discriminator's terms for one step.

VQGAN (Esser et al. 2021) and TiTok's training code: after `start_step` generator steps the tokenizer also
minimises `weight * w * L_G(D(recon))`, where `w` is VQGAN's adaptive weight (the ratio of the reconstruction
and adversarial gradient norms at the decoder's last layer) or 1 when `adaptive` is off, and the discriminator
minimises `discriminator_weight * (hinge + lecam_weight * LeCAM)` on the real images and the detached
reconstructions. The losses themselves are the pure functions of `vistok.trainers.gan_losses`; this module
only holds the settings and the LeCAM averages (saved in every checkpoint) and runs the discriminator in fp32
(outside autocast: its logits feed a hinge and a squared penalty, and the reconstruction it judges is cast to
fp32 anyway). The optimisation itself (two optimizers, one counted step) lives in `TokenizerSystem`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vistok.trainers.gan_losses import (
    LeCAMEMA,
    adaptive_weight,
    gan_weight_at,
    generator_loss,
    hinge_d_loss,
    lecam_loss,
)

GENERATOR_LOSSES = ("hinge", "non_saturating")


@dataclass
class GANSettings:
    """Adversarial settings of `TokenizerSystem` (`gan:` in a config). `lr`, `betas`, `weight_decay` are the
    discriminator's AdamW settings (None: the system's)."""

    start_step: int = 0
    weight: float = 0.1
    adaptive: bool = True
    max_adaptive_weight: float = 1e4
    generator_loss: str = "hinge"
    discriminator_weight: float = 1.0
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if self.generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"gan.generator_loss must be one of {GENERATOR_LOSSES}, got {self.generator_loss!r}")
        if self.start_step < 0:
            raise ValueError(f"gan.start_step must be >= 0, got {self.start_step}")
        for name in ("weight", "discriminator_weight", "lecam_weight", "max_adaptive_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"gan.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ValueError(f"gan.lecam_decay must be in [0, 1), got {self.lecam_decay}")


def last_layer(decoder: nn.Module) -> torch.Tensor:
    """The weight VQGAN's adaptive weight is measured at: the last trainable conv/linear of the decoder's
    `head` when it has one (a pixel ViT; its frozen linear path is skipped), else of the whole decoder in
    registration order (a conv decoder's `conv_out`)."""
    for root in (getattr(decoder, "head", None), decoder):
        if not isinstance(root, nn.Module):
            continue
        weights = [m.weight for m in root.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d))
                   and m.weight.requires_grad]
        if weights:
            return weights[-1]
    raise ValueError(f"{type(decoder).__name__}: no trainable conv or linear layer for the adaptive GAN weight; "
                     "set gan.adaptive: false")


def frames(x: torch.Tensor) -> torch.Tensor:
    """Pixels for a 2D discriminator: images (B, 3, H, W) as they are, clips (B, 3, T, H, W) as their frames
    (B*T, 3, H, W): a frame-wise PatchGAN judges each frame (temporal realism is left to the L1/L2 and
    perceptual terms)."""
    return x.transpose(1, 2).flatten(0, 1) if x.ndim == 5 else x


def _fp32(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class AdversarialLoss:
    """Computes the two sides' terms; `state_dict`/`load_state_dict` carry the LeCAM averages."""

    def __init__(self, settings: GANSettings) -> None:
        self.settings = settings
        self.lecam = LeCAMEMA(settings.lecam_decay)

    def active(self, step: int) -> bool:
        return step >= self.settings.start_step

    def generator_term(self, disc: nn.Module, recon: torch.Tensor, rec_loss: torch.Tensor, decoder: nn.Module,
                       step: int) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """(the weighted adversarial term to add to the generator's loss, or None before the start step;
        values to log). `rec_loss` is the non-adversarial reconstruction loss (pixels + perceptual), whose
        gradient the adaptive weight balances."""
        s = self.settings
        factor = gan_weight_at(step, s.start_step, s.weight)
        if not factor:
            return None, {}
        with _fp32(recon.device):
            logits_fake = disc(frames(recon).float())  # (B, 1, H', W')
            g = generator_loss(logits_fake, s.generator_loss)
        if s.adaptive:
            w = adaptive_weight(rec_loss, g, last_layer(decoder), s.max_adaptive_weight)
        else:
            w = g.new_ones(())
        return factor * w * g, {"gan_g": g.detach(), "adaptive_weight": w,
                                "logits_fake_g": logits_fake.detach().float().mean()}

    def discriminator_term(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                           step: int) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """(the discriminator's loss, or None before the start step; values to log). `fake` is detached here."""
        s = self.settings
        factor = gan_weight_at(step, s.start_step, s.discriminator_weight)
        if not factor:
            return None, {}
        with _fp32(real.device):
            logits_real, logits_fake = disc(frames(real).float()), disc(frames(fake.detach()).float())
            d = hinge_d_loss(logits_real, logits_fake)
            logs = {"gan_d": d.detach(), "logits_real": logits_real.detach().mean(),
                    "logits_fake": logits_fake.detach().mean()}
            loss = d
            if s.lecam_weight:
                reg = lecam_loss(logits_real, logits_fake, self.lecam)
                self.lecam.update(logits_real, logits_fake)
                loss = loss + s.lecam_weight * reg
                logs["lecam"] = reg.detach()
        return factor * loss, logs

    def state_dict(self) -> dict:
        return {"lecam": self.lecam.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.lecam.load_state_dict(state["lecam"])
