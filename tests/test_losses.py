"""Losses in one place: named terms from the model, one mapping of weights in the system, every term logged."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import photo_batch
from vistok.tokenizers.registry import build_tokenizer
from vistok.trainers import losses
from vistok.trainers.system import TokenizerSystem


class _Log:
    """Collects what the system logs (no trainer needed)."""

    def __init__(self, system: TokenizerSystem) -> None:
        self.values: dict[str, float] = {}
        system.log = lambda name, value, **kw: self.values.__setitem__(name, float(torch.as_tensor(value).detach()))


def test_forward_returns_the_model_terms_by_name():
    x = photo_batch(2, 32)
    out = build_tokenizer("titok-tiny")(x)
    assert set(out.losses) == {"quantizer"}
    flow = build_tokenizer("rf-tiny")
    assert set(flow(x).losses) == {"quantizer", "flow"}


def test_the_system_weighs_every_term_from_one_mapping_and_logs_each():
    torch.manual_seed(0)
    x = photo_batch(2, 32)
    system = TokenizerSystem(build_tokenizer("titok-tiny"), loss_weights={"l1": 0.5, "l2": 2.0, "colour": 3.0})
    log = _Log(system)
    system.tokenizer.eval()  # no token dropout: the same reconstruction below
    loss, out = system._step({"image": x}, "val")
    recon = out.recon
    want = (0.5 * losses.l1(recon, x) + 2.0 * losses.l2(recon, x) + 3.0 * losses.colour(recon, x)
            + 1.0 * out.losses["quantizer"])
    torch.testing.assert_close(loss, want)
    for name in ("l1", "l2", "colour"):
        assert name in {k.split("/")[-1] for k in log.values}, f"{name} is logged under its own name"


def test_a_new_pixel_loss_is_one_function_and_one_weight(monkeypatch):
    monkeypatch.setitem(losses.PIXEL_TERMS, "max_error", lambda r, t: (r.float() - t.float()).abs().amax())
    monkeypatch.setitem(losses.DEFAULT_WEIGHTS, "max_error", 0.0)
    x = photo_batch(2, 32)
    system = TokenizerSystem(build_tokenizer("titok-tiny"), loss_weights={"max_error": 1.0})
    log = _Log(system)
    system._step({"image": x}, "val")
    assert "val/max_error" in log.values


@pytest.mark.parametrize("weights, variant, match", [
    ({"l3": 1.0}, "titok-tiny", "unknown loss term 'l3'.*known: l1, l2, colour"),
    ({"l2": -1.0}, "titok-tiny", "loss_weights.l2: expected a finite number >= 0"),
    ({"prior": 0.1}, "titok-tiny", "loss_weights.prior: the tokenizer has no AR prior"),
    ({"flow": 1.0}, "titok-tiny", "loss_weights.flow: ViTPixelDecoder is not a generative decoder"),
    ({"l1": 1.0}, "rf-tiny", "loss_weights.l1: FlowDecoder trains on its own objective"),
])
def test_weights_that_cannot_apply_are_refused_before_any_work(weights, variant, match):
    with pytest.raises(ValueError, match=match):
        TokenizerSystem(build_tokenizer(variant), loss_weights=weights)
