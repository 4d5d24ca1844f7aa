"""The VAE stage of FlexTok as its own config: `KLAutoencoder` (a diffusers AutoencoderKL) trains with the
tokenizers' system and recipe (L1 + LPIPS + the named `kl` term), exports a diffusers directory, and FlexTok
configs take that directory as their VAE, refusing one whose latent channels disagree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import photo_batch
from vistok.decoders.kl_vae import KLAutoencoder
from vistok.trainers.cli import cli_main
from vistok.trainers.losses import resolve_weights
from vistok.trainers.system import TokenizerSystem

CONFIG = Path(__file__).parents[1] / "configs" / "flextok_vae.yaml"
TINY = dict(image_size=32, latent_channels=4, block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
            layers_per_block=1)
TINY_ARGS = ["--model.tokenizer.init_args.image_size=32", "--model.tokenizer.init_args.latent_channels=4",
             "--model.tokenizer.init_args.block_out_channels=[8,16,16,16]",
             "--model.tokenizer.init_args.norm_num_groups=8", "--model.tokenizer.init_args.layers_per_block=1"]


def test_the_kl_term_is_a_named_loss_and_the_loss_falls_on_a_repeated_batch():
    vae = KLAutoencoder(**TINY)
    system = TokenizerSystem(vae, loss_weights={"l1": 1.0, "l2": 0.0, "kl": 1e-6})
    x = photo_batch(4, 32)
    out = vae(x)
    assert set(out.losses) == {"kl"} and out.quant is None and out.recon.shape == x.shape
    assert system.training_record()["kl_weight"] == 1e-6
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss, _ = system._step({"image": x}, "val")  # the training loss without the GAN / perceptual phases
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_a_tokenizer_refuses_the_kl_weight_and_a_vae_the_quantizer_weight():
    from vistok.tokenizers.registry import build_tokenizer

    with pytest.raises(ValueError, match="loss_weights.kl: .* is not a KL bottleneck"):
        TokenizerSystem(build_tokenizer("titok-tiny"), loss_weights={"kl": 1e-6})
    with pytest.raises(ValueError, match="loss_weights.quantizer: a KLAutoencoder has no quantizer term"):
        TokenizerSystem(KLAutoencoder(**TINY), loss_weights={"quantizer": 1.0})
    assert resolve_weights(None)["kl"] == 1e-6


def test_the_vae_config_trains_on_photos_exports_diffusers_and_flextok_takes_it(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from vistok.saving import export_checkpoint

    root = tmp_path / "run"
    cli = cli_main(["fit", "--config", str(CONFIG), *TINY_ARGS, "--trainer.max_steps=3", "--trainer.precision=32-true",
                    f"--trainer.default_root_dir={root}", "--trainer.val_check_interval=3",
                    "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                    "--trainer.log_every_n_steps=1",
                    "--data.batch_size=2", "--data.val_length=2", "--data.num_workers=0"])
    assert cli.trainer.global_step == 3
    assert isinstance(cli.model.tokenizer, KLAutoencoder) and cli.model.perceptual_kind == "lpips-vgg"
    logged = (root / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/kl", "train/l1", "train/perceptual", "val/kl"} <= set(logged)
    assert list((root / "reconstructions").glob("step_*.png"))

    out = export_checkpoint(root / "checkpoints" / "last.ckpt", tmp_path / "vae")
    assert json.loads((out / "config.json").read_text())["latent_channels"] == 4
    vae = AutoencoderKL.from_pretrained(str(out)).eval()
    x = photo_batch(2, 32)
    with torch.no_grad():
        # the exported weights are the trained model's (the EMA-free run: the checkpoint's state_dict)
        want = cli.model.tokenizer.eval().encode(x)
        assert torch.allclose(vae.encode(x).latent_dist.mean, want, atol=1e-5)
    assert vae.encode(x).latent_dist.mean.shape == (2, 4, 4, 4)

    from vistok.decoders.flextok_flow import FlexTokFlowDecoder
    from vistok.tokenizers.flextok import FlexTokVAEEncoder

    tiny = dict(image_size=32, vae_path=str(out), patch_size=16, width=32, depth=1, head_dim=16, num_tokens=4)
    enc = FlexTokVAEEncoder(**tiny, latent_channels=4)
    dec = FlexTokFlowDecoder(**tiny, latent_channels=4)
    assert enc(x).shape == (2, 4, 6) and enc.channels == dec.channels == 4
    with pytest.raises(ValueError, match=r"has 4 latent channels .* states latent_channels: 16"):
        FlexTokVAEEncoder(**tiny, latent_channels=16)
    with pytest.raises(ValueError, match=r"FlexTokFlowDecoder: the VAE at vae_path .* 4 latent channels"):
        FlexTokFlowDecoder(**tiny, latent_channels=16)
