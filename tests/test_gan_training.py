"""Adversarial and perceptual training in `TokenizerSystem` (issue 13, items 1, 2, 3, 5, 10): the GAN phase
starts at its step, `max_steps` counts generator steps, EMA leaves the discriminator alone, resume with a
discriminator is exact, a NaN stops the run naming step and term with the last good checkpoint kept, bf16
autocast runs, and an rFID flattered by an Inception training loss is flagged by eval and the model card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from tests.test_configs import _tiny_overrides
from vistok.data.datamodule import DataModule
from vistok.nn.discriminator import NLayerDiscriminator
from vistok.tokenizers import build_tokenizer
from vistok.trainers import adversarial as adversarial_module
from vistok.trainers.adversarial import GANSettings
from vistok.trainers.callbacks import PeriodicCheckpoint, TokenizerEMA
from vistok.trainers.finite import NonFiniteError
from vistok.trainers.perceptual import PerceptualSettings, build_perceptual
from vistok.trainers.system import TokenizerSystem

ROOT = Path(__file__).parents[1]


def _system(start: int = 2, disc: bool = True, noise: bool = False, **kw) -> TokenizerSystem:
    torch.manual_seed(0)
    tok = build_tokenizer("titok-tiny", dropout="nested")
    d = NLayerDiscriminator(ndf=8, n_layers=2, norm="group", noise=noise) if disc else None
    gan = GANSettings(start_step=start, weight=0.5, lecam_weight=0.01, lecam_decay=0.9) if disc else None
    return TokenizerSystem(tok, lr=1e-3, warmup=2, discriminator=d, gan=gan, **kw)


def _trainer(root: Path, steps: int, callbacks=(), every: int = 2, **kw) -> pl.Trainer:
    args = dict(max_steps=steps, default_root_dir=root, logger=pl.loggers.CSVLogger(root, name="", version=""),
                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, log_every_n_steps=1,
                gradient_clip_val=1.0, precision="32-true", num_sanity_val_steps=0)
    args.update(kw)
    ckpt = PeriodicCheckpoint(every_n_train_steps=every, every_n_minutes=None, dirpath=root / "checkpoints")
    return pl.Trainer(callbacks=[ckpt, *callbacks], **args)


def _data(length: int = 64) -> DataModule:
    return DataModule(train="sample", val=None, image_size=32, batch_size=4, train_length=length, seed=3)


class Watch(pl.Callback):
    """Records, per batch, the global step it started at and whether the discriminator / tokenizer changed."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.disc_changed: list[bool] = []
        self.tok_changed: list[bool] = []

    @staticmethod
    def _copy(m):
        return [p.detach().clone() for p in m.parameters()]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(trainer.global_step)
        self._d, self._t = self._copy(pl_module.discriminator), self._copy(pl_module.tokenizer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        same = lambda a, m: all(torch.equal(x, y) for x, y in zip(a, m.parameters()))  # noqa: E731
        self.disc_changed.append(not same(self._d, pl_module.discriminator))
        self.tok_changed.append(not same(self._t, pl_module.tokenizer))


def _metrics(root: Path) -> list[dict[str, str]]:
    import csv

    with open(root / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_gan_phase_starts_at_its_step_and_max_steps_counts_generator_steps(tmp_path):
    system, watch = _system(start=3), Watch()
    ema = TokenizerEMA(decay=0.9)
    trainer = _trainer(tmp_path, 6, [watch, ema])
    trainer.fit(system, datamodule=_data())
    # max_steps=6: exactly 6 batches, one counted (generator) step each, although 3 of them also stepped D.
    assert watch.starts == [0, 1, 2, 3, 4, 5] and trainer.global_step == 6
    assert watch.disc_changed == [False, False, False, True, True, True]
    assert all(watch.tok_changed)
    # EMA: one update per generator step; the averaged copy of the discriminator is the trained one.
    assert ema._latest_update_step == 6 and int(ema._average_model.n_averaged) == 6
    for a, b in zip(ema._average_model.module.discriminator.state_dict().values(),
                    system.discriminator.state_dict().values()):
        assert torch.equal(a, b)
    # The trainer's gradient_clip_val was taken over by the system (Lightning refuses it in manual mode).
    assert system._clip == (1.0, "norm") and trainer.gradient_clip_val is None
    rows = _metrics(tmp_path)
    logged = {k for r in rows for k, v in r.items() if v}
    for key in ("train/loss", "train/recon", "train/gan_g", "train/gan_d", "train/adaptive_weight",
                "train/logits_real", "train/logits_fake", "train/lecam"):
        assert key in logged, key
        assert all(math.isfinite(float(r[key])) for r in rows if r.get(key)), key
    gan_steps = sorted(int(r["step"]) for r in rows if r.get("train/gan_d"))
    assert gan_steps == [3, 4, 5]
    assert system.adversarial.lecam.logits_real != 0.0
    # The checkpoint: discriminator weights (trained), LeCAM state, the losses for export and eval.
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6 and len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    assert ckpt["vistok_adversarial"]["lecam"]["logits_real"] == system.adversarial.lecam.logits_real
    record = ckpt["vistok_training"]
    assert record["adversarial"]["start_step"] == 3 and record["perceptual"] is None
    assert record["adversarial"]["discriminator"]["class_path"].endswith("NLayerDiscriminator")


def test_plain_ema_callback_with_a_discriminator_is_refused(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    trainer = _trainer(tmp_path, 1, [EMAWeightAveraging()])
    with pytest.raises(ValueError, match="TokenizerEMA"):
        trainer.fit(_system(), datamodule=_data())


class StopAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


def _weights(system: TokenizerSystem) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in system.state_dict().items()}


def test_resume_with_a_discriminator_equals_an_uninterrupted_run(tmp_path):
    steps, cut = 8, 4  # the GAN starts at 2: the cut falls inside the adversarial phase, mid-epoch
    # with OmniTokenizer's input noise: the resumed discriminator draws the noise the uninterrupted one drew
    whole = _system(noise=True)
    _trainer(tmp_path / "whole", steps, [TokenizerEMA(decay=0.9)]).fit(whole, datamodule=_data(48))

    first = _system(noise=True)
    _trainer(tmp_path / "cut", steps, [TokenizerEMA(decay=0.9), StopAt(cut)]).fit(first, datamodule=_data(48))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == cut
    generators = saved["vistok_rng"][0]["generators"]  # the tokenizer's under its own names, the noise's prefixed
    assert "discriminator.noise" in generators and not any(n.startswith("tokenizer.") for n in generators)
    assert saved["vistok_training"]["adversarial"]["discriminator"]["init_args"]["noise"] is True
    assert first.discriminator.noise.weight.abs().sum() > 0  # the noise reaches the logits by the cut
    resumed = _system(noise=True)
    trainer = _trainer(tmp_path / "cut", steps, [TokenizerEMA(decay=0.9)])
    trainer.fit(resumed, datamodule=_data(48), ckpt_path=last)
    assert trainer.global_step == steps
    a, b = _weights(whole), _weights(resumed)  # after training: EMA tokenizer + trained discriminator
    assert a.keys() == b.keys() and any(k.startswith("discriminator.") for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    assert resumed.adversarial.state_dict() == whole.adversarial.state_dict()
    ca = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    cb = torch.load(last, map_location="cpu", weights_only=True)
    for k in ca["current_model_state"]:  # the trained (not averaged) weights of both sides
        assert torch.equal(ca["current_model_state"][k], cb["current_model_state"][k]), k
    for sa, sb in zip(ca["optimizer_states"], cb["optimizer_states"]):
        for pa, pb in zip(sa["state"].values(), sb["state"].values()):
            assert torch.equal(pa["exp_avg"], pb["exp_avg"])
    assert ca["lr_schedulers"] == cb["lr_schedulers"]


class PoisonAt(pl.Callback):
    """Turns one training batch into NaNs."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch["image"].fill_(float("nan"))


def test_nan_batch_stops_the_run_naming_step_and_term_keeping_the_last_good_checkpoint(tmp_path):
    system = _system(disc=False)
    trainer = _trainer(tmp_path, 10, [PoisonAt(5)])
    with pytest.raises(NonFiniteError, match=r"step 5: the 'l2' loss is nan") as info:
        trainer.fit(system, datamodule=_data())
    assert "last.ckpt" in str(info.value)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4  # the checkpoint before the poisoned step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in system.parameters())  # no step was taken with it


def test_nan_discriminator_loss_is_named(tmp_path, monkeypatch):
    real = adversarial_module.discriminator_loss
    calls = []

    def poisoned(lr, lf, *args):
        calls.append(1)
        out = real(lr, lf, *args)
        return out * float("nan") if len(calls) == 2 else out

    monkeypatch.setattr(adversarial_module, "discriminator_loss", poisoned)
    system = _system(start=2)
    with pytest.raises(NonFiniteError, match=r"step 3: the 'gan_d' loss is nan"):
        _trainer(tmp_path, 6).fit(system, datamodule=_data())
    assert all(torch.isfinite(p).all() for p in system.discriminator.parameters())


def test_no_checkpoint_is_written_with_non_finite_weights(tmp_path):
    from vistok.trainers.finite import check_weights

    check_weights({"a": torch.zeros(2), "i": torch.zeros(2, dtype=torch.long)}, 3)
    with pytest.raises(NonFiniteError, match=r"step 3: weight 'w' holds NaN"):
        check_weights({"w": torch.tensor([1.0, float("inf")])}, 3)


def test_bf16_mixed_gan_step_has_finite_losses_and_fp32_quantization(tmp_path):
    system = _system(start=0)
    seen = []
    quantize = system.tokenizer.quantizer.quantize

    def spy(z):
        seen.append((z.dtype, torch.is_autocast_enabled("cpu")))
        return quantize(z)

    system.tokenizer.quantizer.quantize = spy
    trainer = _trainer(tmp_path, 2, precision="bf16-mixed")
    trainer.fit(system, datamodule=_data())
    assert trainer.global_step == 2 and seen and all(s == (torch.float32, False) for s in seen)
    rows = _metrics(tmp_path)
    for key in ("train/loss", "train/gan_g", "train/gan_d"):
        values = [float(r[key]) for r in rows if r.get(key)]
        assert values and all(math.isfinite(v) for v in values), key


def test_perceptual_choice_and_its_messages(tmp_path, monkeypatch, capsys):
    assert build_perceptual(None) == (None, None)
    assert build_perceptual(PerceptualSettings(kind="none")) == (None, None)
    with pytest.raises(ValueError, match="perceptual.kind"):
        PerceptualSettings(kind="vgg")
    _, kind = build_perceptual(PerceptualSettings(kind="auto"))
    assert kind == "lpips-vgg"  # the converted weights are in the cache (make install)
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="vistok weights fetch"):
        build_perceptual(PerceptualSettings(kind="lpips"))
    import vistok.trainers.perceptual as perceptual

    def missing(path=None):
        raise FileNotFoundError("no FID Inception weights: install it")

    monkeypatch.setattr(perceptual, "find_inception", missing)
    assert build_perceptual(PerceptualSettings(kind="auto")) == (None, None)
    out = capsys.readouterr().out
    assert out.count("perceptual loss off") == 1 and "vistok weights fetch" in out and "Inception" in out


def test_training_with_the_lpips_loss(tmp_path):
    system = _system(disc=False, perceptual=PerceptualSettings(kind="lpips", weight=0.5))
    assert system.perceptual_kind == "lpips-vgg" and list(system.perceptual.state_dict()) == []
    _trainer(tmp_path, 2).fit(system, datamodule=_data())
    values = [float(r["train/perceptual"]) for r in _metrics(tmp_path) if r.get("train/perceptual")]
    assert values and all(0 < v < 1 for v in values)
    assert system.training_record()["perceptual"] == {"kind": "lpips-vgg", "weight": 0.5}


def _tiny_inception(path: Path) -> Path:
    from tests.test_metrics import TinyInception

    torch.manual_seed(0)
    torch.jit.script(TinyInception().eval()).save(str(path))
    return path


def test_inception_loss_training_is_flagged_by_the_card_and_eval(tmp_path):
    """A model trained with the Inception feature loss (here a small stand-in TorchScript) says so in its
    checkpoint, export (config.json `training`, model card) and `vistok eval`'s notes."""
    from vistok.evaluate import EvalSettings, evaluate
    from vistok.saving import export_checkpoint
    from vistok.training_record import training_losses

    net = _tiny_inception(tmp_path / "inception.pt")
    system = _system(disc=False, perceptual=PerceptualSettings(kind="inception", weight=0.1,
                                                               inception_path=str(net)))
    assert system.perceptual_kind == "inception" and list(system.perceptual.state_dict()) == []
    run = tmp_path / "run"
    _trainer(run, 2).fit(system, datamodule=_data())
    assert any(r.get("train/perceptual") for r in _metrics(run))
    ckpt = run / "checkpoints" / "last.ckpt"
    assert training_losses(ckpt)["perceptual"] == {"kind": "inception", "weight": 0.1}
    export = export_checkpoint(ckpt, tmp_path / "export")
    config = json.loads((export / "config.json").read_text())
    assert config["training"]["losses"]["perceptual"]["kind"] == "inception"
    card = (export / "README.md").read_text()
    assert "perceptual inception" in card and "flatter" in card
    result = evaluate(EvalSettings(model=str(export), output=str(tmp_path / "eval"), limit=4, batch_size=4,
                                   num_tokens=[8], baselines=[], inception=str(net), progress=False))
    assert any("flatter" in n for n in result["notes"])
    assert result["training_losses"]["perceptual"]["kind"] == "inception"
    plain = _system(disc=False)
    assert plain.training_record()["perceptual"] is None


def test_gan_config_trains_two_steps_through_the_cli_and_exports(tmp_path):
    from vistok.saving import export_checkpoint
    from vistok.trainers.cli import cli_main

    config = ROOT / "configs" / "demo_gan.yaml"
    doc = yaml.safe_load(config.read_text())
    for cb in doc["trainer"]["callbacks"]:
        if cb["class_path"].endswith("PCAInit"):
            cb["init_args"]["num_images"] = 256
    small = tmp_path / "demo_gan.yaml"
    small.write_text(yaml.safe_dump(doc))
    args = [a for a in _tiny_overrides(small, tmp_path) if "max_steps" not in a]
    cli = cli_main(["fit", "--config", str(small), *args, "--trainer.max_steps=2", "--model.gan.start_step=1"])
    assert cli.trainer.global_step == 2 and not cli.model.automatic_optimization
    assert isinstance(cli.model.discriminator, NLayerDiscriminator)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["vistok_training"]["adversarial"]["start_step"] == 1
    export = export_checkpoint(ckpt, tmp_path / "export")
    assert "GAN" in (export / "README.md").read_text()


def test_vistok_fit_fails_on_a_nan_in_one_line_keeping_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from vistok.cli import main

    monkeypatch.delenv("VISTOK_DEBUG", raising=False)
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for cb in doc["trainer"]["callbacks"]:
        if cb["class_path"].endswith("PCAInit"):
            cb["init_args"]["num_images"] = 256
        if cb["class_path"].endswith("PeriodicCheckpoint"):
            cb["init_args"] = {"every_n_train_steps": 2, "every_n_minutes": None}
    doc["trainer"]["callbacks"].append({"class_path": "tests.test_gan_training.PoisonAt", "init_args": {"step": 3}})
    config = tmp_path / "poisoned.yaml"
    config.write_text(yaml.safe_dump(doc))
    args = [a for a in _tiny_overrides(config, tmp_path) if "max_steps" not in a]
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config), *args, "--trainer.max_steps=6"])
    assert info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vistok fit: error:")]
    assert len(err) == 1 and "step 3" in err[0] and "'l2'" in err[0] and "last.ckpt" in err[0], err
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
