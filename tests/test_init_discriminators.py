"""`init_discriminators`: a new run continues the previous stage's discriminators (OmniTokenizer's stage 3 starts
its video discriminator from stage 2's, the official `--init_vdis keep`), or, off, starts them afresh."""

import logging

import pytest
import torch

from tests.conftest import SEED
from tests.test_video_model import _fit, pan_clip
from vistok.nn.discriminator import NLayerDiscriminator3D
from vistok.tokenizers import build_tokenizer
from vistok.trainers.adversarial import GANSettings
from vistok.trainers.system import TokenizerSystem

GAN = GANSettings(start_step=0, weight=0.0, video_weight=0.1, adaptive=False)


def _system(ndf: int = 8, **kwargs) -> TokenizerSystem:
    return TokenizerSystem(build_tokenizer("larp-tiny"), lr=1e-3, gan=GAN,
                           video_discriminator=NLayerDiscriminator3D(ndf=ndf, n_layers=2), **kwargs)


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """A two-step run with a video discriminator (trained, so its weights are not the initial ones) and its
    checkpoint and export."""
    torch.manual_seed(SEED)
    system = _system()
    trainer = _fit(system, {"video": pan_clip(5, batch=2)}, steps=2)
    root = tmp_path_factory.mktemp("stage2")
    trainer.save_checkpoint(root / "last.ckpt")
    system.tokenizer.save_pretrained(root / "export")
    return system, root


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_option_continues_the_discriminator_and_without_it_it_starts_afresh(stage2, caplog):
    trained, root = stage2
    with caplog.at_level(logging.INFO):
        on = _system(init_from=str(root / "last.ckpt"), init_discriminators=True)
    n = len(trained.video_discriminator.state_dict())
    assert f"video_discriminator loaded {n} tensors; missing (kept as initialised) 0" in caplog.text
    assert _same(on.video_discriminator, trained.video_discriminator)
    assert _same(on.tokenizer, trained.tokenizer)
    assert on.hparams["init_discriminators"] is True
    off = _system(init_from=str(root / "last.ckpt"))
    assert _same(off.tokenizer, trained.tokenizer)
    assert not _same(off.video_discriminator, trained.video_discriminator)


def test_bad_sources_are_refused_naming_what_is_wrong(stage2):
    _, root = stage2
    with pytest.raises(ValueError, match="export directory holds the tokenizer only, no discriminator"):
        _system(init_from=str(root / "export"), init_discriminators=True)
    with pytest.raises(ValueError, match=r"tensor 'video_discriminator\.main\.0\.weight' has shape \(8, 3, 4, 4, 4\), "
                                         r"the model expects \(4, 3, 4, 4, 4\)"):
        _system(ndf=4, init_from=str(root / "last.ckpt"), init_discriminators=True)
    _system(init_discriminators=True)  # no init_from: a run from scratch (a stage config run as a smoke test)
    # a checkpoint of a run without a video discriminator
    plain = TokenizerSystem(build_tokenizer("larp-tiny"), lr=1e-3)
    trainer = _fit(plain, {"video": pan_clip(5, batch=2)}, steps=1)
    trainer.save_checkpoint(root / "plain.ckpt")
    with pytest.raises(ValueError, match="has no 'video_discriminator' weights .*no discriminator"):
        _system(init_from=str(root / "plain.ckpt"), init_discriminators=True)
    with pytest.raises(ValueError, match="no discriminator to initialise"):
        TokenizerSystem(build_tokenizer("larp-tiny"), init_from=str(root / "last.ckpt"), init_discriminators=True)
