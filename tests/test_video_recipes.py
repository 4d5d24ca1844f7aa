"""The official video recipes (issue 24 item 4): OmniTokenizer's three stages and LARP's losses.

Parts: the KL bottleneck (OmniTokenizer's stage 3) against the closed-form KL; the 3-D video PatchGAN's shapes;
GAN feature matching; LARP's transformer discriminator. Recipes: each config trains two steps at tiny size on the
CPU (the recipe's structure and losses, narrow widths) and logs every loss term it weighs.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.test_configs import _tiny_overrides
from vistok.nn.discriminator import NLayerDiscriminator, NLayerDiscriminator3D
from vistok.nn.transformer_discriminator import TransformerDiscriminator
from vistok.quantizers.gaussian import DiagonalGaussianBottleneck, kl_divergence
from vistok.trainers.adversarial import AdversarialLoss, GANSettings

CONFIGS = Path(__file__).parents[1] / "configs"


# --- the KL bottleneck --------------------------------------------------------------------------------------
def test_kl_is_zero_for_a_standard_normal_posterior_and_matches_the_closed_form():
    q = DiagonalGaussianBottleneck(dim=4)
    torch.nn.init.zeros_(q.logvar.weight)
    torch.nn.init.zeros_(q.logvar.bias)  # logvar 0: variance 1
    assert q(torch.zeros(3, 5, 4)).loss.item() == 0.0  # N(0, I) is the prior: KL exactly 0
    torch.nn.init.constant_(q.logvar.bias, -1.0)
    z = torch.full((3, 5, 4), 0.5)
    # per number 0.5 * (m^2 + e^b - 1 - b), summed over 5 tokens x 4 dims, averaged over the batch
    want = 0.5 * (0.25 + torch.exp(torch.tensor(-1.0)).item() - 1 + 1) * 20
    assert q(z).loss.item() == pytest.approx(want, rel=1e-6)
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def test_kl_falls_when_minimised_and_the_codes_are_sampled_in_training_only():
    torch.manual_seed(0)
    q = DiagonalGaussianBottleneck(dim=8)
    z = torch.nn.Parameter(torch.randn(2, 6, 8) * 2)
    opt = torch.optim.Adam([z, *q.parameters()], lr=0.05)
    seen = []
    for _ in range(200):
        loss = q(z).loss
        seen.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert seen[-1] < 0.05 * seen[0]
    assert all(b <= a + 1e-6 for a, b in zip(seen[::20], seen[20::20]))  # falls every 20 steps
    q.eval()
    x = torch.randn(2, 6, 8)
    assert torch.equal(q(x).codes, x)  # eval: the posterior mean
    q.train()
    assert not torch.equal(q(x).codes, q(x).codes)  # training: a sample


def _vae_tokenizer():
    from vistok.decoders.omni import OmniDecoder
    from vistok.tokenizers.omni import OmniEncoder
    from vistok.tokenizers.tokenizer import Tokenizer

    enc = OmniEncoder(image_size=16, patch_size=8, temporal_patch=4, width=32, num_heads=2, spatial_blocks=["full"],
                      temporal_depth=1, num_frames=5, token_dim=4)
    dec = OmniDecoder(image_size=16, patch_size=8, temporal_patch=4, width=32, num_heads=2, spatial_blocks=["full"],
                      temporal_depth=1, token_dim=4)
    return Tokenizer(enc, DiagonalGaussianBottleneck(dim=4), dec).eval()


def test_a_continuous_tokenizer_gives_latents_and_refuses_ids_exports_and_shards(tmp_path):
    tok = _vae_tokenizer()
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    assert tok.continuous
    latents = tok.encode_latents(x)
    assert latents.shape == (2, 2 * 2 * 2, 4) and torch.equal(latents, tok.encode_latents(x))  # deterministic
    assert tok.decode_latents(latents).shape == x.shape
    out = tok(x)
    assert set(out.losses) == {"kl"} and out.quant.indices.shape == (2, 0)
    for call in (lambda: tok.encode(x), lambda: tok.decode(torch.zeros(2, 8, dtype=torch.long)),
                 lambda: tok.codebook_size):
        with pytest.raises(ValueError, match="continuous KL bottleneck"):
            call()
    with pytest.raises(ValueError, match="cannot export .* continuous KL bottleneck"):
        tok.save_pretrained(tmp_path / "export")
    assert not (tmp_path / "export").exists()
    from vistok.shards.writer import encode_to_shards

    with pytest.raises(ValueError, match="token shards need token ids"):
        encode_to_shards(tok, [str(tmp_path)], str(tmp_path / "shards"))
    assert not (tmp_path / "shards").exists()


def test_loss_weights_name_the_bottleneck_term():
    from vistok.trainers.system import TokenizerSystem

    with pytest.raises(ValueError, match="loss_weights.quantizer: .*weigh its term as kl"):
        TokenizerSystem(_vae_tokenizer(), loss_weights={"quantizer": 1.0})
    TokenizerSystem(_vae_tokenizer(), loss_weights={"kl": 1e-6})


# --- discriminators ---------------------------------------------------------------------------------------
def _out(n: int, pad: int, stride: int) -> int:
    return (n + 2 * pad - 4) // stride + 1


def test_3d_patchgan_judges_space_time_patches():
    d = NLayerDiscriminator3D(ndf=8, n_layers=3, norm="batch", padding=2)
    x = torch.randn(2, 3, 17, 64, 64)
    t, s = 17, 64
    for stride in (2, 2, 2, 1, 1):  # first conv, two more stride-2 stages, the stride-1 stage, the logits
        t, s = _out(t, 2, stride), _out(s, 2, stride)
    assert d(x).shape == (2, 1, t, s, s) == (2, 1, 5, 11, 11)
    feats = d.features(x)
    assert len(feats) == 3 + 2 and feats[-1].shape == (2, 1, 5, 11, 11)
    assert [f.shape[1] for f in feats[:-1]] == [8, 16, 32, 64]
    with pytest.raises(ValueError, match=r"expects \(B, 3, T, H, W\) clips"):
        d(torch.randn(2, 3, 64, 64))
    # the 2-D one keeps taming's layout and names (padding 1): checkpoints load as before
    assert NLayerDiscriminator(ndf=8)(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert "main.2.weight" in NLayerDiscriminator(ndf=8).state_dict()


def test_transformer_discriminator_gives_one_logit_per_clip():
    d = TransformerDiscriminator(patch_size=8, temporal_patch=4, width=32, depth=1, num_heads=4)
    assert d(torch.randn(3, 3, 8, 32, 32)).shape == (3, 1)
    with pytest.raises(ValueError, match="multiple of 4"):
        d(torch.randn(3, 3, 5, 32, 32))


def test_feature_matching_is_nonzero_with_the_discriminator_on_and_zero_on_a_perfect_reconstruction():
    settings = GANSettings(weight=0.01, video_weight=0.01, adaptive=False, feature_matching=4.0)
    loss = AdversarialLoss(settings)
    image, video = NLayerDiscriminator(ndf=8, n_layers=3, padding=2), NLayerDiscriminator3D(ndf=8, n_layers=3)
    real = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    recon = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    decoder = torch.nn.Linear(1, 1)
    terms, logs = loss.generator_term(image, video, real, recon, torch.zeros(()), decoder, step=0)
    assert set(terms) == {"gan_g", "gan_fm"} and terms["gan_fm"].item() > 0
    assert {"gan_g_image", "gan_g_video"} <= set(logs)
    terms["gan_fm"].backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0  # it trains the generator
    image.eval(), video.eval()  # fixed BatchNorm statistics: the same input gives the same features
    same, _ = loss.generator_term(image, video, real, real.clone(), torch.zeros(()), decoder, step=0)
    assert same["gan_fm"].item() == 0.0
    # before the start step, or an image batch for a video-only recipe: no adversarial terms at all
    late = AdversarialLoss(GANSettings(start_step=5, feature_matching=4.0, adaptive=False))
    assert late.generator_term(image, None, real, recon, torch.zeros(()), decoder, step=4) == ({}, {})
    video_only = AdversarialLoss(GANSettings(weight=0.0, video_weight=0.01, feature_matching=4.0, adaptive=False))
    img = torch.rand(2, 3, 32, 32)
    assert video_only.generator_term(None, video, img, img, torch.zeros(()), decoder, step=0) == ({}, {})
    assert video_only.discriminator_term(None, video, img, img, step=0) == (None, {})


def test_larp_discriminator_loss_and_cadence():
    loss = AdversarialLoss(GANSettings(weight=0.0, video_weight=0.3, adaptive=False, every=5,
                                       generator_loss="non_saturating", discriminator_loss="non_saturating_smooth",
                                       lecam_weight=1e-6))
    d = TransformerDiscriminator(width=32, depth=1, num_heads=4)
    real, fake = torch.rand(2, 3, 8, 32, 32), torch.rand(2, 3, 8, 32, 32)
    a, logs = loss.discriminator_term(None, d, real, fake, step=10)
    b, _ = AdversarialLoss(loss.settings).discriminator_term(None, d, real, fake, step=10)
    assert a.item() == pytest.approx(b.item())  # the noisy labels are the step's: a resumed run draws the same
    assert {"gan_d_video", "logits_real_video", "lecam_video"} <= set(logs)
    assert loss.discriminator_term(None, d, real, fake, step=11) == (None, {})  # every 5th step
    with pytest.raises(ValueError, match="discriminator_loss must be one of"):
        GANSettings(discriminator_loss="wasserstein")


# --- the recipes train -------------------------------------------------------------------------------------
NARROW_OMNI = [f"--model.tokenizer.init_args.{part}.init_args.{k}" for part in ("encoder", "decoder")
               for k in ("width=32", "num_heads=2", "head_dim=16")]
RECIPES = {
    # config: (overrides beyond the one-step test's tiny ones, the terms it must log)
    "omnitokenizer_256": (NARROW_OMNI + ["--model.discriminator.init_args.ndf=8"],
                          ["l1", "quantizer", "gan_g", "gan_fm", "gan_d"]),
    "omnitokenizer_256_joint": (NARROW_OMNI + ["--model.video_discriminator.init_args.ndf=8"],
                                ["l1", "quantizer", "gan_g", "gan_fm", "gan_d_video"]),
    "omnitokenizer_256_vae": (NARROW_OMNI + ["--model.video_discriminator.init_args.ndf=8"],
                              ["l1", "kl", "gan_g", "gan_fm", "gan_d_video"]),
    "larp_l": ([f"--model.tokenizer.init_args.{part}.init_args.{k}" for part in ("encoder", "decoder")
                for k in ("width=32", "num_heads=2")] +
               ["--model.tokenizer.init_args.encoder.init_args.image_size=32",
                "--model.tokenizer.init_args.prior.init_args.width=32",
                "--model.tokenizer.init_args.prior.init_args.num_heads=2",
                "--model.video_discriminator.init_args.width=32", "--model.video_discriminator.init_args.num_heads=2"],
               ["l1", "quantizer", "prior", "gan_g", "gan_d_video", "lecam_video"]),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_and_logs_its_losses(name, tmp_path):
    from vistok.trainers.cli import cli_main

    config = CONFIGS / f"{name}.yaml"
    extra, terms = RECIPES[name]
    args = [a for a in _tiny_overrides(config, tmp_path) if not a.startswith("--trainer.max_steps")]
    cli = cli_main(["fit", "--config", str(config), *args, *extra, "--trainer.max_steps=2",
                    "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=0",
                    "--trainer.enable_model_summary=false"])
    assert cli.trainer.global_step == 2
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    logged = {k for r in rows for k, v in r.items() if v}
    missing = [t for t in terms if f"train/{t}" not in logged]
    assert not missing, f"{name}: not logged: {missing}; logged: {sorted(logged)}"
    values = {t: [float(r[f"train/{t}"]) for r in rows if r.get(f"train/{t}")] for t in terms}
    assert all(torch.isfinite(torch.tensor(v)).all() for v in values.values())
    if "gan_fm" in values:
        assert max(values["gan_fm"]) > 0  # the discriminator is on from step 0
    weights = cli.model.loss_weights
    for term in ("l1", "quantizer", "kl", "prior"):  # every model term the config weighs is logged
        if term in terms:
            assert weights[term] > 0
