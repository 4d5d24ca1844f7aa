"""OmniTokenizer's multi-resolution training (`resolution_scales`, `vistok.trainers.multiresolution`): a tiny
official network with RoPE trains on both sizes of [0.5, 1.0], a resumed run draws the scales the uninterrupted
one drew, validation keeps the model's size, and a model that cannot take a scale is refused before any work."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from tests.test_gan_training import StopAt
from vistok import Tokenizer
from vistok.data.datamodule import DataModule
from vistok.decoders.omni import OmniDecoder
from vistok.nn.omni_blocks import rope_angles
from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.omni import OmniEncoder
from vistok.trainers.callbacks import PeriodicCheckpoint
from vistok.trainers.multiresolution import resize
from vistok.trainers.system import TokenizerSystem

TINY = dict(image_size=32, patch_size=4, temporal_patch=4, width=16, num_heads=2, head_dim=8, window_size=2,
            temporal_depth=1, token_dim=4)


def _tokenizer(architecture: str = "official", spatial_pos: str = "rope", window_size: int = 2) -> Tokenizer:
    torch.manual_seed(0)
    kw = {**TINY, "architecture": architecture, "spatial_pos": spatial_pos, "window_size": window_size}
    return Tokenizer(OmniEncoder(spatial_blocks=["full", "window"], num_frames=5, **kw),
                     FSQQuantizer(levels=[5, 5, 5, 5]), OmniDecoder(spatial_blocks=["full"], **kw))


class Sizes(pl.Callback):
    """The frame side the tokenizer is given, per training step and in validation."""

    def __init__(self) -> None:
        self.train: list[int] = []
        self.val: list[int] = []

    def on_fit_start(self, trainer, pl_module):
        def hook(module, args):
            (self.train if module.training else self.val).append(int(args[0].shape[-1]))
        self._handle = pl_module.tokenizer.register_forward_pre_hook(hook)

    def on_fit_end(self, trainer, pl_module):
        self._handle.remove()


def _fit(root: Path, steps: int, callbacks, ckpt_path: Path | None = None, val: bool = False) -> TokenizerSystem:
    system = TokenizerSystem(_tokenizer(), lr=1e-3, warmup=1, loss_weights={"l1": 1.0, "l2": 0.0},
                             resolution_scales=[0.5, 1.0])
    trainer = pl.Trainer(max_steps=steps, default_root_dir=root, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, precision="32-true", num_sanity_val_steps=0,
                         limit_val_batches=1 if val else 0, val_check_interval=2 if val else None,
                         callbacks=[PeriodicCheckpoint(every_n_train_steps=1, every_n_minutes=None,
                                                       dirpath=root / "checkpoints"), *callbacks])
    data = DataModule(train="sample", val="sample" if val else None, image_size=32, batch_size=2,
                      val_batch_size=2, train_length=64, val_length=2, seed=3)
    trainer.fit(system, datamodule=data, ckpt_path=ckpt_path)
    return system


def test_training_sees_every_scale_validation_none_and_a_resumed_run_draws_the_same_scales(tmp_path):
    whole = Sizes()
    _fit(tmp_path / "whole", 6, [whole], val=True)
    assert set(whole.train) == {16, 32}, whole.train  # 0.5 and 1.0 of 32 px
    assert whole.val and set(whole.val) == {32}  # validation is never rescaled

    first = Sizes()
    _fit(tmp_path / "cut", 6, [first, StopAt(3)])
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    states = torch.load(last, map_location="cpu", weights_only=True)["vistok_rng"]
    assert "system.multiresolution" in states[0]["generators"]  # the draw's state is in the checkpoint
    resumed = Sizes()
    _fit(tmp_path / "cut", 6, [resumed], ckpt_path=last)
    assert first.train + resumed.train == whole.train, (first.train, resumed.train, whole.train)
    assert resumed.train != whole.train[:len(resumed.train)]  # a freshly seeded draw would not have passed


def test_a_model_that_cannot_take_a_scale_is_refused_naming_the_field_and_the_size():
    tok = _tokenizer(architecture="vistok")  # learned absolute positions: one grid
    with pytest.raises(ValueError, match=r"resolution_scales: scale 0.5 of 32 x 32 gives 16 x 16 .*learned absolute"):
        TokenizerSystem(tok, resolution_scales=[0.5, 1.0])
    TokenizerSystem(tok, resolution_scales=[1.0])  # its own size is fine
    with pytest.raises(ValueError, match=r"resolution_scales: scale 0.75 .* 24 x 24 .*'rel'"):
        TokenizerSystem(_tokenizer(spatial_pos="rel"), resolution_scales=[0.75])
    # 0.75 of 32 px is a 6 x 6 token grid: not whole 4 x 4 windows (0.5 is 4 x 4: fine)
    with pytest.raises(ValueError, match=r"resolution_scales: scale 0.75 .* 24 x 24 .*window_size 4"):
        TokenizerSystem(_tokenizer(window_size=4), resolution_scales=[0.5, 0.75])
    with pytest.raises(ValueError, match=r"resolution_scales: scale 0.8 .* 25 x 25 .*patch_size 4"):
        TokenizerSystem(_tokenizer(), resolution_scales=[0.8])
    with pytest.raises(ValueError, match="resolution_scales must be positive"):
        TokenizerSystem(_tokenizer(), resolution_scales=[0.5, 0])


def test_a_scale_too_small_for_the_discriminator_is_refused_before_work():
    from vistok.nn.discriminator import NLayerDiscriminator3D
    from vistok.trainers.adversarial import GANSettings

    def system(padding: int) -> TokenizerSystem:
        d = NLayerDiscriminator3D(ndf=4, n_layers=3, norm="group", padding=padding)
        return TokenizerSystem(_tokenizer(), video_discriminator=d, gan=GANSettings(video_weight=0.1),
                               resolution_scales=[0.25, 1.0])

    # 8 px through three stride-2 and two stride-1 4x4 convs with padding 1: 4, 2, 1, then below one pixel
    with pytest.raises(ValueError, match=r"scale 0.25 .* 8 x 8 .*NLayerDiscriminator3D needs frames of at least"):
        system(padding=1)
    system(padding=2)  # OmniTokenizer's padding keeps 8 px above one pixel: 5, 3, 2, 3, 4
    x = torch.zeros(1, 3, 5, 8, 8)
    assert NLayerDiscriminator3D(ndf=4, n_layers=3, norm="group", padding=2)(x).shape[-2:] == (4, 4)


def test_clips_are_resized_frame_by_frame_and_the_decoder_follows_the_grid():
    clip = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    small = resize(clip, (16, 16))
    frame = F.interpolate(clip[:, :, 3], size=(16, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(small[:, :, 3], frame, rtol=0, atol=0)
    tok = _tokenizer()
    out = tok(small)
    assert out.recon.shape == small.shape and out.quant.codes.shape[1] == 2 * 4 * 4  # 2 latent frames of 4 x 4
    with pytest.raises(ValueError, match=r"got \(2, 3, 5, 20, 20\) \(the encoder's 5 x 5 token grid"):
        tok(resize(clip, (20, 20)))


def test_rope_at_another_grid_is_the_official_rule_for_that_grid():
    """The official builds 2-D RoPE per grid from the token index n: column n % side, row n // side; pair 2k
    turns with the column and pair 2k+1 with the row, at frequency theta^(-4k / head_dim)."""
    d, side = 8, 6
    n = torch.arange(side * side).float()
    freqs = 10000.0 ** (-torch.arange(0, d, 4).float() / d)
    expect = torch.empty(side * side, d // 2)
    expect[:, 0::2] = (n % side)[:, None] * freqs
    expect[:, 1::2] = torch.div(n, side, rounding_mode="floor")[:, None] * freqs
    torch.testing.assert_close(rope_angles(d, side, side), expect)
