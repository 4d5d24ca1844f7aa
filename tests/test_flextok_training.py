"""Training the released FlexTok architecture (its training code is not public): the CPU config trains a few
steps through `vistok fit`, with REPA on a tiny frozen TorchScript feature network; a missing feature network
is refused before any work; FSQ's regularisers act in training only."""

from pathlib import Path

import pytest
import torch
from torch import nn

from vistok.decoders.flextok_flow import FlexTokFlowDecoder
from vistok.decoders.repa import REPA
from vistok.quantizers.fsq import FSQQuantizer
from vistok.trainers.cli import cli_main

CONFIG = Path(__file__).parents[1] / "configs" / "flextok_official_tiny.yaml"


class TinyFeatures(nn.Module):
    """A stand-in for DINOv2: (B, 3, 28, 28) -> (B, 4 * 4, 12) patch features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, kernel_size=7, stride=7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(2).transpose(1, 2)


@pytest.fixture
def features(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "features.pt"
    torch.jit.trace(TinyFeatures().eval(), torch.zeros(1, 3, 28, 28)).save(str(path))
    return path


def test_the_cpu_config_trains_a_few_steps_with_repa(tmp_path, features):
    repa = ("{class_path: vistok.decoders.repa.REPA, init_args: {feature_path: " + str(features)
            + ", feature_dim: 12, layer: 1, hidden: 32, feature_size: 28}}")
    cli = cli_main(["fit", "--config", str(CONFIG), "--trainer.max_steps=4", f"--trainer.default_root_dir={tmp_path}",
                    f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.limit_val_batches=1",
                    "--trainer.val_check_interval=4", "--trainer.enable_progress_bar=false", "--data.batch_size=4",
                    "--data.val_length=2", "--data.val_batch_size=2",
                    "--model.tokenizer.init_args.decoder.init_args.sampler.init_args.steps=2",
                    f"--model.tokenizer.init_args.decoder.init_args.repa={repa}"])
    assert cli.trainer.global_step == 4
    tok = cli.model.tokenizer
    assert isinstance(tok.decoder.repa, REPA)
    assert not any(k.startswith("decoder.repa.features") for k in tok.state_dict()), "the frozen net stays out"
    proj = tok.decoder.repa.projector[0].weight
    tok.train()
    torch.manual_seed(1)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = tok(x)
    assert torch.isfinite(out.losses["flow"])
    out.losses["flow"].backward()
    assert proj.grad is not None and proj.grad.abs().sum() > 0, "REPA's projector gets a gradient"


def test_repa_aligns_the_projected_tokens_with_the_features(features):
    """The loss is -weight * mean cosine(projector(hidden), features on the patch grid): in [-w, w], and a
    projector trained on fixed hidden tokens drives it towards -w."""
    torch.manual_seed(0)
    dec = FlexTokFlowDecoder(image_size=32, patch_size=8, width=64, depth=2, head_dim=32, num_tokens=16,
                             repa=REPA(str(features), feature_dim=12, layer=0, hidden=32, feature_size=28,
                                       weight=0.5))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert dec.repa.targets(images, dec.grid).shape == (2, 16, 12)  # features on the 4x4 patch grid
    hidden = torch.randn(2, 16, 64)
    opt = torch.optim.Adam(dec.repa.projector.parameters(), lr=1e-2)
    first = float(dec.repa(hidden, images, dec.grid))
    for _ in range(60):
        opt.zero_grad()
        loss = dec.repa(hidden, images, dec.grid)
        loss.backward()
        opt.step()
    assert -0.5 <= float(loss) < first - 0.2 and float(loss) < -0.4


def test_missing_repa_features_are_refused_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"REPA feature network not found: feature_path='.*nope.pt'"):
        REPA(str(tmp_path / "nope.pt"), feature_dim=12)
    with pytest.raises(ValueError, match="repa.layer 5 is not a decoder block"):
        FlexTokFlowDecoder(image_size=32, patch_size=8, width=64, depth=2, head_dim=32, num_tokens=16,
                           repa=_repa_at(tmp_path, 5))


def _repa_at(tmp_path: Path, layer: int) -> REPA:
    path = tmp_path / "f.pt"
    torch.jit.trace(TinyFeatures().eval(), torch.zeros(1, 3, 28, 28)).save(str(path))
    return REPA(str(path), feature_dim=12, layer=layer)


def test_fsq_regularisers_act_in_training_only():
    torch.manual_seed(0)
    z = torch.randn(64, 16, 6)
    plain = FSQQuantizer([8, 8, 8, 5, 5, 5])
    reg = FSQQuantizer([8, 8, 8, 5, 5, 5], drop_quant_p=0.5, corrupt_tokens_p=0.5, apply_corrupt_tokens_p=1.0)
    assert sum(p.numel() for p in reg.parameters()) == 0
    reg.eval(), plain.eval()
    a, b = plain(z), reg(z)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.indices, b.indices)
    reg.train()
    c = reg(z).codes
    grid = torch.tensor([4, 4, 4, 2, 2, 2.0])
    on_grid = ((c * grid) - (c * grid).round()).abs().amax(dim=(1, 2)) < 1e-5  # (B,) all codes rounded
    assert 0 < int((~on_grid).sum()) < 64, "about half the samples skip the rounding"
    changed = (c != a.codes).any(-1)  # corrupted positions carry random codes
    assert changed.float().mean() > 0.2
