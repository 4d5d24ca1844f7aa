"""The adversarial phase of tokenizer training: the generator's and the discriminators' terms for one step.

VQGAN (Esser et al. 2021) and TiTok's training code: after `start_step` generator steps the tokenizer also
minimises `weight * w * L_G(D(recon))`, where `w` is VQGAN's adaptive weight (the ratio of the reconstruction
and adversarial gradient norms at the decoder's last layer) or 1 when `adaptive` is off, and the discriminator
minimises `discriminator_weight * (L_D + lecam_weight * LeCAM)` on the real images and the detached
reconstructions.

Two discriminators, either or both (`TokenizerSystem(discriminator=..., video_discriminator=...)`), as TATS and
OmniTokenizer (Wang et al. 2024) train video tokenizers: the image one judges frames (every frame of a clip;
OmniTokenizer's draws one per clip), weighted `weight`; the video one judges whole clips (a 3-D PatchGAN,
`vistok.nn.discriminator.NLayerDiscriminator3D`, or LARP's transformer, `vistok.nn.transformer_discriminator`),
weighted `video_weight`, on clip batches only (an image batch of joint training gives it nothing to judge). The
generator's adversarial term is `w * sum_k weight_k * L_G(D_k(recon))` (the adaptive `w` measured on the
unweighted sum), logged as `gan_g`.

GAN feature matching (pix2pixHD, Wang et al. 2018; OmniTokenizer's `gan_feat_weight`): with `feature_matching`
> 0 the generator also minimises `feature_matching * sum_k sum_i 4 / n_k * |D_k^i(recon) - D_k^i(real)|_1`
over the n_k intermediate feature maps of each discriminator with a non-zero weight (its `features()`; the real
side detached), logged as `gan_fm`. 4 / n_k is OmniTokenizer's per-layer weight (1 for three-layer PatchGANs).

`discriminator_loss`: `hinge` (taming, OmniTokenizer), `non_saturating` (BCE on real 1 / fake 0, LARP's `ns`),
`non_saturating_smooth` (LARP's default `ns_smooth`: one-sided noisy labels, real targets 1 - |N(0, 0.15^2)|
clamped to >= 0.7, fake targets |N(0, 0.15^2)| clamped to <= 0.3, drawn from a generator seeded by the step so a
resumed run draws the same). `every`: the discriminators step on generator steps divisible by it (LARP's
`d_update_freq` 5). `skip_below`: a discriminator step whose loss (weighted, averaged over the step's batches and
the processes) is below it is skipped (OmniTokenizer's `--disloss_check_thres 0.001`: a discriminator that
already wins is left alone). `warmup`: the discriminators' own linear warm-up, a fraction of the run when < 1
else steps (OmniTokenizer's `--dis_warmup_steps 500000`, the whole run; None: the generator's). `order`:
`generator_first` (VQGAN, OmniTokenizer: the discriminators judge the reconstructions after the generator's step)
or `discriminator_first` (LARP: the discriminators step on the detached reconstructions first, and the
generator's adversarial term is computed by the updated discriminators).

The losses themselves are the pure functions of `vistok.trainers.gan_losses`; this module only holds the
settings and the LeCAM averages (one per discriminator, saved in every checkpoint) and runs the discriminators
in fp32 (outside autocast: their logits feed a hinge and a squared penalty, and the reconstruction they judge is
cast to fp32 anyway). The optimisation itself (two optimizers, one counted step) lives in `TokenizerSystem`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vistok.trainers.gan_losses import (
    DISCRIMINATOR_LOSSES,
    LeCAMEMA,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    lecam_loss,
)

GENERATOR_LOSSES = ("hinge", "non_saturating")
ORDERS = ("generator_first", "discriminator_first")


@dataclass
class GANSettings:
    """Adversarial settings of `TokenizerSystem` (`gan:` in a config). `weight` weighs the image discriminator's
    generator term, `video_weight` the video discriminator's, `feature_matching` the GAN feature-matching term.
    `lr`, `betas`, `weight_decay` are the discriminators' AdamW settings (None: the system's)."""

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
    video_weight: float = 0.0
    feature_matching: float = 0.0
    discriminator_loss: str = "hinge"
    every: int = 1
    skip_below: float | None = None
    warmup: float | None = None
    order: str = "generator_first"

    def __post_init__(self) -> None:
        if self.generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"gan.generator_loss must be one of {GENERATOR_LOSSES}, got {self.generator_loss!r}")
        if self.discriminator_loss not in DISCRIMINATOR_LOSSES:
            raise ValueError(f"gan.discriminator_loss must be one of {DISCRIMINATOR_LOSSES}, got "
                             f"{self.discriminator_loss!r}")
        if self.start_step < 0:
            raise ValueError(f"gan.start_step must be >= 0, got {self.start_step}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"gan.every must be an integer >= 1, got {self.every!r}")
        for name in ("weight", "discriminator_weight", "lecam_weight", "max_adaptive_weight", "video_weight",
                     "feature_matching"):
            if getattr(self, name) < 0:
                raise ValueError(f"gan.{name} must be >= 0, got {getattr(self, name)}")
        if self.order not in ORDERS:
            raise ValueError(f"gan.order must be one of {ORDERS}, got {self.order!r}")
        if self.warmup is not None and (self.warmup < 0 or (self.warmup >= 1 and self.warmup != int(self.warmup))):
            raise ValueError(f"gan.warmup must be a fraction of the run in [0, 1) or a whole number of steps, got "
                             f"{self.warmup}")
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
    (B*T, 3, H, W): a frame-wise PatchGAN judges each frame (temporal realism is left to a video discriminator,
    the L1/L2 and perceptual terms)."""
    return x.transpose(1, 2).flatten(0, 1) if x.ndim == 5 else x


def is_clip(x: torch.Tensor) -> bool:
    """A batch a video discriminator judges: clips of more than one frame."""
    return x.ndim == 5 and x.shape[2] > 1


def _fp32(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def feature_matching(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """sum_i 4 / n * mean |fake_i - real_i| over the n intermediate maps (the logits, last, are left out); the
    real side is detached."""
    n = len(fake) - 1
    if n < 1:
        raise ValueError("feature matching needs a discriminator with intermediate features")
    return sum((4.0 / n) * F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake[:-1], real[:-1]))


class AdversarialLoss:
    """Computes the two sides' terms; `state_dict`/`load_state_dict` carry the LeCAM averages."""

    def __init__(self, settings: GANSettings) -> None:
        self.settings = settings
        self.lecam = LeCAMEMA(settings.lecam_decay)  # the image discriminator's
        self.lecam_video = LeCAMEMA(settings.lecam_decay)

    def active(self, step: int) -> bool:
        return step >= self.settings.start_step

    def on_cadence(self, step: int) -> bool:
        """Whether generator step `step` is one the discriminators step on (skipped or not)."""
        return self.active(step) and step % self.settings.every == 0

    def first_step(self) -> int:
        """The first generator step the discriminators step on."""
        s = self.settings
        return -(-s.start_step // s.every) * s.every

    def _judged(self, image: nn.Module | None, video: nn.Module | None, x: torch.Tensor):
        """(name, discriminator, its input, its generator weight, its LeCAM averages) for each discriminator that
        judges this batch."""
        s = self.settings
        out = []
        if image is not None:
            out.append(("image", image, frames(x), s.weight, self.lecam))
        if video is not None and is_clip(x):
            out.append(("video", video, x, s.video_weight, self.lecam_video))
        return out

    def generator_term(self, image: nn.Module | None, video: nn.Module | None, real: torch.Tensor,
                       recon: torch.Tensor, rec_loss: torch.Tensor, decoder: nn.Module,
                       step: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the weighted terms to add to the generator's loss: `gan_g` and, with feature matching, `gan_fm`;
        none before the start step or when no discriminator judges this batch; values to log). `rec_loss` is
        the non-adversarial reconstruction loss (pixels + perceptual), whose gradient the adaptive weight
        balances."""
        s = self.settings
        if not self.active(step):
            return {}, {}
        judged = [j for j in self._judged(image, video, recon) if j[3] > 0]
        if not judged:
            return {}, {}
        raw, weighted, fm, logs = [], [], [], {}
        with _fp32(recon.device):
            for name, disc, fake_in, weight, _ in judged:
                suffix = "" if name == "image" else "_video"
                if s.feature_matching:
                    fake = disc.features(fake_in.float())
                    with torch.no_grad():
                        real_in = frames(real) if name == "image" else real
                        real_features = disc.features(real_in.float())
                    fm.append(feature_matching(fake, real_features))
                    logits = fake[-1]
                else:
                    logits = disc(fake_in.float())
                g = generator_loss(logits, s.generator_loss)
                raw.append(g)
                weighted.append(weight * g)
                logs[f"gan_g_{name}"] = g.detach()
                logs[f"logits_fake_g{suffix}"] = logits.detach().float().mean()
            g_sum = sum(raw)
            if s.adaptive:
                w = adaptive_weight(rec_loss, g_sum, last_layer(decoder), s.max_adaptive_weight)
            else:
                w = g_sum.new_ones(())
        logs["adaptive_weight"] = w
        terms = {"gan_g": w * sum(weighted)}
        if fm:
            terms["gan_fm"] = s.feature_matching * sum(fm)
        return terms, logs

    def discriminator_term(self, image: nn.Module | None, video: nn.Module | None, real: torch.Tensor,
                           fake: torch.Tensor, step: int) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """(the discriminators' loss, or None before the start step, off the `every` cadence or when no
        discriminator judges this batch; values to log). `fake` is detached here."""
        s = self.settings
        if not self.on_cadence(step) or not s.discriminator_weight:
            return None, {}
        fake = fake.detach()
        judged = self._judged(image, video, real)
        if not judged:
            return None, {}
        rng = None
        if s.discriminator_loss == "non_saturating_smooth":
            rng = torch.Generator(device=real.device)
            rng.manual_seed(step)  # the labels' noise: the same on a resumed run
        loss, logs = 0.0, {}
        with _fp32(real.device):
            for name, disc, real_in, _, ema in judged:
                suffix = "" if name == "image" else "_video"
                fake_in = frames(fake) if name == "image" else fake
                logits_real, logits_fake = disc(real_in.float()), disc(fake_in.float())
                d = discriminator_loss(logits_real, logits_fake, s.discriminator_loss, rng)
                logs.update({f"gan_d{suffix}": d.detach(), f"logits_real{suffix}": logits_real.detach().mean(),
                             f"logits_fake{suffix}": logits_fake.detach().mean()})
                loss = loss + d
                if s.lecam_weight:
                    reg = lecam_loss(logits_real, logits_fake, ema)
                    ema.update(logits_real, logits_fake)
                    loss = loss + s.lecam_weight * reg
                    logs[f"lecam{suffix}"] = reg.detach()
        return s.discriminator_weight * loss, logs

    def state_dict(self) -> dict:
        return {"lecam": self.lecam.state_dict(), "lecam_video": self.lecam_video.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.lecam.load_state_dict(state["lecam"])
        if "lecam_video" in state:  # checkpoints from before the video discriminator
            self.lecam_video.load_state_dict(state["lecam_video"])
