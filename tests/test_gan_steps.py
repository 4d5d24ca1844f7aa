"""How the adversarial phase steps (issue 24, the official recipes): gradient accumulation under manual
optimisation (OmniTokenizer's `--grad_accumulates 2`), skipped discriminator steps below a loss threshold
(`--disloss_check_thres`), the discriminators' own warm-up (`--dis_warmup_steps`) and their schedule on LARP's
`d_update_freq` cadence, LARP's discriminator-first order, and the EMA copy of a video discriminator."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tests.test_gan_training import Watch, _data, _metrics, _trainer
from vistok.nn.discriminator import NLayerDiscriminator
from vistok.tokenizers import build_tokenizer
from vistok.trainers import adversarial as adversarial_module
from vistok.trainers.adversarial import GANSettings
from vistok.trainers.callbacks import TokenizerEMA
from vistok.trainers.schedule import warmup_cosine
from vistok.trainers.system import TokenizerSystem


def _system(video: bool = False, lr: float = 1e-3, **gan) -> TokenizerSystem:
    torch.manual_seed(0)
    tok = build_tokenizer("titok-tiny")
    d = NLayerDiscriminator(ndf=8, n_layers=2, norm="group")
    settings = GANSettings(**{"start_step": 0, "weight": 0.5, "adaptive": False, "lr": 2e-3, **gan})
    if video:
        return TokenizerSystem(tok, lr=lr, warmup=2, video_discriminator=d, gan=settings)
    return TokenizerSystem(tok, lr=lr, warmup=2, discriminator=d, gan=settings)


class DiscLR(pl.Callback):
    """The discriminators' learning rate at the start of each batch."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[1].param_groups[0]["lr"])


def test_accumulation_steps_both_sides_every_n_batches_and_counts_steps(tmp_path):
    system, watch = _system(), Watch()
    trainer = _trainer(tmp_path, 3, [watch], accumulate_grad_batches=2)
    trainer.fit(system, datamodule=_data())
    # 6 batches, 3 counted steps: both sides change on the 2nd batch of each pair only.
    assert trainer.global_step == 3 and watch.starts == [0, 0, 1, 1, 2, 2]
    assert watch.tok_changed == [False, True] * 3
    assert watch.disc_changed == [False, True] * 3
    assert system._accumulate == 2 and trainer.accumulate_grad_batches == 1


def test_accumulated_gradients_are_the_mean_of_the_batches(tmp_path, monkeypatch):
    """Two batches accumulated give the discriminator the mean of their two gradients: the generator's backward
    (which also reaches the discriminator's weights) leaves the discriminator's accumulating gradient alone."""
    seen: list[list[torch.Tensor]] = []
    original = TokenizerSystem._discriminator_update

    def record(self, opt_d, sched_d):
        seen.append([p.grad.clone() for p in self.discriminator.parameters()])
        return original(self, opt_d, sched_d)

    monkeypatch.setattr(TokenizerSystem, "_discriminator_update", record)
    singles: list[torch.Tensor] = []
    term = adversarial_module.AdversarialLoss.discriminator_term

    def grads_alone(self, image, video, real, fake, step):
        loss, logs = term(self, image, video, real, fake, step)
        g = torch.autograd.grad(loss, list(image.parameters()), retain_graph=True)
        singles.append([x.clone() for x in g])
        return loss, logs

    monkeypatch.setattr(adversarial_module.AdversarialLoss, "discriminator_term", grads_alone)
    system = _system(lr=0.0)  # the tokenizer stands still: both batches see the same generator
    _trainer(tmp_path, 1, [], accumulate_grad_batches=2, gradient_clip_val=None).fit(system, datamodule=_data())
    assert len(seen) == 1 and len(singles) == 2
    for got, a, b in zip(seen[0], *singles):
        torch.testing.assert_close(got, (a + b) / 2, rtol=1e-5, atol=1e-7)


def test_a_discriminator_below_the_loss_threshold_does_not_step(tmp_path):
    system, watch = _system(skip_below=1e9), Watch()
    _trainer(tmp_path, 3, [watch]).fit(system, datamodule=_data())
    assert watch.disc_changed == [False] * 3 and all(watch.tok_changed)
    assert [float(r["train/gan_d_skipped"]) for r in _metrics(tmp_path) if r.get("train/gan_d_skipped")] == [1.0] * 3
    system, watch = _system(skip_below=0.0), Watch()
    _trainer(tmp_path / "b", 3, [watch]).fit(system, datamodule=_data())
    assert watch.disc_changed == [True] * 3


def test_the_discriminators_own_warmup_and_their_schedule_on_the_every_cadence(tmp_path):
    steps = 8
    cb = DiscLR()
    _trainer(tmp_path, steps, [cb]).fit(_system(warmup=6), datamodule=_data())
    assert cb.lrs == pytest.approx([2e-3 * warmup_cosine(s, steps, 6) for s in range(steps)])
    # every 3: the discriminators step at 0, 3, 6 and take the factor of those generator steps (warm-up 2, the
    # generator's), not of their own step count.
    cb = DiscLR()
    _trainer(tmp_path / "b", steps, [cb]).fit(_system(every=3), datamodule=_data())
    at = {s: cb.lrs[s] for s in (0, 3, 6)}
    assert at == pytest.approx({s: 2e-3 * warmup_cosine(s, steps, 2) for s in (0, 3, 6)})


@pytest.mark.parametrize("order", ["generator_first", "discriminator_first"])
def test_discriminator_first_order_judges_the_generator_with_the_stepped_discriminator(tmp_path, monkeypatch, order):
    changed: list[bool] = []
    term = adversarial_module.AdversarialLoss.generator_term
    before: dict[str, list[torch.Tensor]] = {}

    class Snapshot(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            before["d"] = [p.detach().clone() for p in pl_module.discriminator.parameters()]

    def spy(self, image, video, *args, **kw):
        changed.append(any(not torch.equal(a, p) for a, p in zip(before["d"], image.parameters())))
        return term(self, image, video, *args, **kw)

    monkeypatch.setattr(adversarial_module.AdversarialLoss, "generator_term", spy)
    watch = Watch()
    _trainer(tmp_path, 3, [Snapshot(), watch]).fit(_system(order=order), datamodule=_data())
    assert changed == [order == "discriminator_first"] * 3
    assert watch.disc_changed == [True] * 3 and all(watch.tok_changed)


def test_settings_refuse_an_unknown_order_and_a_bad_warmup():
    with pytest.raises(ValueError, match="gan.order"):
        GANSettings(order="both")
    with pytest.raises(ValueError, match="gan.warmup"):
        GANSettings(warmup=2.5)


class Nudge(pl.Callback):
    """Moves the video discriminator's weights after each batch, as a training step would (image batches do
    not train it here)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with torch.no_grad():
            for p in pl_module.video_discriminator.parameters():
                p.add_(1.0)


def test_the_ema_copy_of_a_video_discriminator_is_the_trained_one(tmp_path):
    from vistok.nn.discriminator import NLayerDiscriminator3D

    system = _system()
    system.video_discriminator = NLayerDiscriminator3D(ndf=8, n_layers=1, norm="group")
    ema = TokenizerEMA(decay=0.5)
    _trainer(tmp_path, 3, [Nudge(), ema]).fit(system, datamodule=_data())
    for name in ("discriminator", "video_discriminator"):
        avg = getattr(ema._average_model.module, name).state_dict()
        for k, v in getattr(system, name).state_dict().items():
            assert torch.equal(avg[k], v), (name, k)
