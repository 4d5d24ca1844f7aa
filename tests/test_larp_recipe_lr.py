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
    assert model["gan"]["lr"] == 3e-5 and model["lr"] == 1e-4
    assert {"width": 512, "depth": 12, "num_heads": 8}.items() <= model["video_discriminator"]["init_args"].items()
    assert "lr_scales" not in model  # the official schedule resets the prior's x50 group every step
