"""Adversarial losses as pure functions (they never log), following VQGAN (Esser et al. 2021,
taming-transformers `VQLPIPSWithDiscriminator`) and TiTok's / MaskGIT's training code.

- `hinge_d_loss`: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))), halved as in taming; `discriminator_loss`
  picks it or LARP's non-saturating forms (BCE real 1 / fake 0, plain or with one-sided noisy labels).
- `generator_loss`: hinge (-mean D(G(z)), taming and TiTok) or non-saturating (softplus(-D(G(z)))).
- LeCAM regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data"):
  mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(G(z)))^2), with exponential moving averages of the
  discriminator's mean real and fake logits held by `LeCAMEMA` (checkpointable state). The paper's form is
  used, as TiTok's; some codebases drop the relu.
- `adaptive_weight`: VQGAN's ||dL_rec/dW|| / (||dL_gan/dW|| + 1e-4) at the decoder's last layer W, clamped
  and detached.
- `gan_weight_at`: 0 before the start step, `weight` from it on (taming's `adopt_weight`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss, 0.5 * (mean relu(1 - real) + mean relu(1 + fake)); pass detached fakes."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


DISCRIMINATOR_LOSSES = ("hinge", "non_saturating", "non_saturating_smooth")


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The discriminator's loss on real and (detached) fake logits: `"hinge"` (`hinge_d_loss`),
    `"non_saturating"` BCE(real, 1) + BCE(fake, 0) (LARP's `ns`, not halved), or `"non_saturating_smooth"` the same
    with noisy one-sided targets (LARP's `ns_smooth`): real 1 - |n| * 0.15 clamped to >= 0.7, fake |n| * 0.15 clamped
    to <= 0.3, n ~ N(0, 1) drawn from `generator`."""
    real, fake = logits_real.float(), logits_fake.float()
    if kind == "hinge":
        return hinge_d_loss(real, fake)
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "non_saturating_smooth":
        def noise(t: torch.Tensor) -> torch.Tensor:
            return torch.randn(t.shape, generator=generator, device=t.device).abs() * 0.15

        real_target = (1.0 - noise(real)).clamp_min(0.7)
        fake_target = noise(fake).clamp_max(0.3)
        return (F.binary_cross_entropy_with_logits(real, real_target)
                + F.binary_cross_entropy_with_logits(fake, fake_target))
    raise ValueError(f"discriminator_loss: kind must be one of {DISCRIMINATOR_LOSSES}, got {kind!r}")


def generator_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """The generator's adversarial loss on D(G(z)): `"hinge"` -mean(logits) or `"non_saturating"`
    mean(softplus(-logits)) (= -log sigmoid)."""
    logits_fake = logits_fake.float()
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"generator_loss: kind must be 'hinge' or 'non_saturating', got {kind!r}")


class LeCAMEMA:
    """Exponential moving averages of the discriminator's mean real and fake logits for LeCAM.

    Starts at 0 (as TiTok's and the LeCAM authors' code); `update` takes the batch logits and returns nothing.
    Not an `nn.Module` (no parameters); `state_dict`/`load_state_dict` let a checkpoint carry it."""

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCAMEMA: decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.logits_real = 0.0
        self.logits_fake = 0.0

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        d = self.decay
        self.logits_real = d * self.logits_real + (1 - d) * float(logits_real.float().mean())
        self.logits_fake = d * self.logits_fake + (1 - d) * float(logits_fake.float().mean())

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "logits_real": self.logits_real, "logits_fake": self.logits_fake}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.logits_real = float(state["logits_real"])
        self.logits_fake = float(state["logits_fake"])


def lecam_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, ema: LeCAMEMA) -> torch.Tensor:
    """LeCAM regulariser for the discriminator: mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2).
    Call `ema.update` after (or before, consistently) computing it; this function does not change `ema`."""
    real, fake = logits_real.float(), logits_fake.float()
    return (F.relu(real - ema.logits_fake).pow(2).mean() + F.relu(ema.logits_real - fake).pow(2).mean())


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4, eps: float = 1e-4) -> torch.Tensor:
    """VQGAN's adaptive GAN weight: ||d rec_loss / d last_layer|| / (||d gan_loss / d last_layer|| + eps),
    clamped to [0, max_weight] and detached. `last_layer` is the decoder's final weight tensor; both losses must
    depend on it. The graph is kept (`retain_graph=True`) for the backward of the total loss."""
    rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def gan_weight_at(step: int, start_step: int, weight: float) -> float:
    """The GAN term's weight at generator step `step`: 0 before `start_step`, `weight` from it on."""
    return float(weight) if step >= start_step else 0.0
