"""LARP's learning rates: the `lr_scales` fragment "prior." (the scripts' intended optimizer.prior_lr_mult) reaches
the AR prior's parameters and only those, in configs/larp_l.yaml's network and in a trained system; and the
recipe's schedule numbers are the reproduce script's."""

from pathlib import Path

import torch
import yaml

from tests.test_video_model import _fit, pan_clip
from vistok.tokenizers import build_tokenizer
from vistok.trainers.system import TokenizerSystem

LARP_L = Path(__file__).parents[1] / "configs" / "larp_l.yaml"


def test_the_prior_fragment_names_exactly_the_prior_parameters_of_larp_l():
    from vistok.configurable import from_config
    from vistok.importers.lightning_ckpt import config_from_file

    with torch.device("meta"):
        tok = from_config(config_from_file(LARP_L))
    hit = {n for n, _ in tok.named_parameters() if "prior." in n}
    assert hit == {f"prior.{n}" for n, _ in tok.prior.named_parameters()} and hit


def test_lr_scales_gives_the_prior_fifty_times_the_lr_and_nothing_else():
    tok = build_tokenizer("larp-tiny", prior=True)
    system = TokenizerSystem(tok, lr=1e-3, lr_scales={"prior.": 50.0})
    trainer = _fit(system, {"video": pan_clip(5, batch=2)}, steps=1)
    prior = {id(p) for p in tok.prior.parameters()}
    for group in trainer.optimizers[0].param_groups:
        expected = 5e-2 if all(id(p) in prior for p in group["params"]) else 1e-3
        assert group["initial_lr"] == expected
        assert all((id(p) in prior) == (expected == 5e-2) for p in group["params"]), "a group mixes prior and not"
    at_50 = {id(p) for g in trainer.optimizers[0].param_groups if g["initial_lr"] == 5e-2 for p in g["params"]}
    assert at_50 == prior


def test_larp_l_follows_the_reproduce_script_schedule():
    model = yaml.safe_load(LARP_L.read_text())["model"]
    assert model["warmup"] == round(8 / 150, 7) and model["min_lr_ratio"] == 0.01  # warmup_epoch 8 of 150
    assert model["warmup_start"] == 0.01  # the official warm-up rises from min_lr_mult
    assert model["gan"]["order"] == "discriminator_first" and model["gan"]["every"] == 5
    assert model["gan"]["lr"] == 3e-5 and model["lr"] == 1e-4
    assert {"width": 512, "depth": 12, "num_heads": 8}.items() <= model["video_discriminator"]["init_args"].items()
    assert "lr_scales" not in model  # the official schedule resets the prior's x50 group every step


def test_the_warmup_rises_from_warmup_start_and_a_bad_one_is_refused():
    import lightning.pytorch as pl
    import pytest

    seen: list[float] = []

    class LR(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    from torch.utils.data import DataLoader

    from vistok.trainers.schedule import warmup_cosine

    system = TokenizerSystem(build_tokenizer("larp-tiny"), lr=1e-3, warmup=4, min_lr_ratio=0.01, warmup_start=0.01)
    pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[LR()],
               enable_model_summary=False, accelerator="cpu").fit(
        system, DataLoader([{"video": pan_clip(5, batch=2)}] * 3, batch_size=None))
    assert seen == pytest.approx([1e-3 * (0.01 + 0.99 * (s + 1) / 4) for s in range(3)])
    assert warmup_cosine(0, 10, 4, 0.01, 0.01) > warmup_cosine(0, 10, 4, 0.01)  # from the floor, not from 0
    with pytest.raises(ValueError, match="warmup_start"):
        TokenizerSystem(build_tokenizer("larp-tiny"), warmup_start=1.5)
