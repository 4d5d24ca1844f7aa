"""Rectified-flow decoder: objective, sampler, network, latent space, export."""

import pytest
import torch

from tests.conftest import SEED, photo_batch
from vistok import Tokenizer
from vistok.decoders.flow import FlowDecoder
from vistok.decoders.rectified_flow import EulerSampler, RectifiedFlow, guided_velocity
from vistok.tokenizers import build_tokenizer

STEPS = 500  # overfitting steps of the tiny decoder test (300 left one seed of five at the threshold)


def _tiny_decoder(**kw) -> FlowDecoder:
    args = dict(image_size=32, patch_size=8, width=64, depth=2, num_heads=2, num_tokens=8, token_dim=4,
                qk_norm=False)
    return FlowDecoder(**{**args, **kw})


def test_objective_endpoints_and_target():
    x0, noise = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    rf = RectifiedFlow()
    assert torch.equal(rf.interpolate(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(rf.interpolate(x0, noise, torch.ones(3)), noise)
    mid = rf.interpolate(x0, noise, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(mid[1], 0.5 * (x0[1] + noise[1]))
    assert torch.equal(rf.target(x0, noise), noise - x0)
    # the target is d x_t / d sigma
    s = torch.full((3,), 0.3)
    torch.testing.assert_close((rf.interpolate(x0, noise, s + 1e-3) - rf.interpolate(x0, noise, s)) / 1e-3,
                               rf.target(x0, noise), atol=1e-3, rtol=1e-3)


def test_logit_normal_sigmas_and_condition_dropout():
    rf = RectifiedFlow(cond_drop_prob=0.5)
    s = rf.sample_sigma(4096)
    assert s.shape == (4096,) and 0 < s.min() and s.max() < 1
    assert abs(s.mean().item() - 0.5) < 0.02 and abs(torch.logit(s).std().item() - 1.0) < 0.05
    seen = []

    def velocity(x, sigma, context):
        seen.append(context[:, 0, 0])
        return torch.zeros_like(x)

    cond, null = torch.ones(2000, 1, 1), torch.zeros(2000, 1, 1)
    rf.loss(velocity, torch.randn(2000, 1, 2, 2), cond, null)
    assert 0.45 < (seen[0] == 0).float().mean().item() < 0.55


@pytest.mark.parametrize("steps", [1, 2, 7, 25])
def test_sampler_with_oracle_velocity_recovers_x0(steps):
    x0 = torch.randn(2, 3, 8, 8)
    # Along the straight path from noise z to x0, x_t = sigma*z + (1-sigma)*x0, so z = (x_t - (1-sigma)*x0)/sigma
    # and the exact velocity is z - x0 = (x_t - x0) / sigma.
    def oracle(x, sigma, context):
        return (x - x0) / sigma.reshape(-1, 1, 1, 1)

    out = EulerSampler().sample(oracle, (3, 8, 8), torch.zeros(2, 1, 1), steps=steps, seed=3)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_guidance_scale_one_is_the_conditional_prediction_and_cfg_doubles_the_batch():
    def velocity(x, sigma, context):
        return x * context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1) + sigma.reshape(-1, 1, 1, 1)

    x, sigma = torch.randn(3, 2, 4, 4), torch.rand(3)
    cond, null = torch.randn(3, 5, 6), torch.randn(3, 5, 6)
    torch.testing.assert_close(guided_velocity(velocity, x, sigma, cond, null, 1.0), velocity(x, sigma, cond))
    calls = []

    def counting(x, sigma, context):
        calls.append(x.shape[0])
        return velocity(x, sigma, context)

    EulerSampler().sample(counting, (2, 4, 4), cond, null, steps=4, guidance_scale=3.0)
    assert calls == [6] * 4, "CFG must run once per step on the doubled batch"
    calls.clear()
    EulerSampler().sample(counting, (2, 4, 4), cond, null, steps=4, guidance_scale=1.0)
    assert calls == [3] * 4


def test_fixed_seed_gives_identical_output_and_batch_does_not_change_an_image():
    torch.manual_seed(0)
    dec = _tiny_decoder().eval()
    torch.nn.init.normal_(dec.out_proj.weight, std=0.02)  # a non-zero velocity
    codes = torch.randn(3, 8, 4)
    a = dec.reconstruct(codes, steps=3, seed=7)
    b = dec.reconstruct(codes, steps=3, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, dec.reconstruct(codes, steps=3, seed=8))
    torch.testing.assert_close(dec.reconstruct(codes[1:2], steps=3, seed=7), a[1:2], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(dec.reconstruct(codes, steps=2, guidance_scale=2.0, seed=7)).all()


@pytest.mark.parametrize("prediction", ["velocity", "sample", "preconditioned"])
def test_tiny_rf_decoder_overfits_and_more_steps_get_closer(prediction):
    torch.manual_seed(SEED)
    x = photo_batch(4, split="train", seed=SEED + 1)  # (4, 3, 32, 32)
    dec = _tiny_decoder(patch_size=4, num_tokens=4, objective=RectifiedFlow(cond_drop_prob=0.0), prediction=prediction)
    codes = torch.randn(4, 4, 4)  # one fixed code sequence per image
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-3, weight_decay=0.0)
    rep = 4  # every image seen at 4 noise levels per step
    for _ in range(STEPS):
        loss, _ = dec.training_loss(codes.repeat(rep, 1, 1), None, x.repeat(rep, 1, 1, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    err = {s: torch.mean((dec.reconstruct(codes, steps=s, seed=0) - x) ** 2).item() for s in (1, 5, 25)}
    assert err[25] < 0.5 * torch.mean(x**2).item(), err  # far better than predicting 0
    if prediction == "velocity":
        # One Euler step has to jump from pure noise to the image; more steps correct the network's errors.
        assert err[25] < err[1] and err[5] < err[1], err
    else:
        # An x0 head's single step is already its estimate of the image; more steps must not drift from it.
        assert err[25] < 2 * err[1] + 1e-3 and err[5] < 2 * err[1] + 1e-3, err


def test_x0_prediction_returns_the_velocity_it_implies():  # JiT-style head
    dec = _tiny_decoder(prediction="sample", min_sigma=0.05).eval()  # zero-initialised head: x0_hat = 0
    x_t, ctx = torch.randn(3, 3, 32, 32), dec.condition(torch.randn(3, 8, 4))
    sigma = torch.tensor([1.0, 0.5, 0.01])
    v = dec(x_t, sigma, ctx)
    # v = (x_t - x0_hat) / sigma, with sigma floored at min_sigma so the last steps stay finite
    torch.testing.assert_close(v, x_t / torch.tensor([1.0, 0.5, 0.05]).reshape(3, 1, 1, 1))
    with pytest.raises(ValueError, match="prediction"):
        _tiny_decoder(prediction="eps")


def test_preconditioned_head_skips_the_input_and_stays_finite_at_every_sigma():
    sd = 0.5
    dec = _tiny_decoder(prediction="preconditioned", sigma_data=sd).eval()  # zero head: F = 0
    x_t, ctx = torch.randn(4, 3, 32, 32), dec.condition(torch.randn(4, 8, 4))
    sigma = torch.tensor([0.0, 0.02, 0.5, 1.0])
    v = dec(x_t, sigma, ctx)
    assert torch.isfinite(v).all()
    s = sigma.reshape(4, 1, 1, 1)
    c_skip = (1 - s) * sd**2 / ((1 - s) ** 2 * sd**2 + s**2)  # the best linear estimate of x0 from x_t
    x0_hat = x_t - s * v
    torch.testing.assert_close(x0_hat, c_skip * x_t)
    torch.testing.assert_close(x0_hat[0], x_t[0])  # sigma = 0: the input is the image
    torch.testing.assert_close(x0_hat[3], torch.zeros_like(x_t[3]))  # sigma = 1: pure noise says nothing


def test_fewer_tokens_and_variable_lengths_decode():
    tok = build_tokenizer("rf-tiny").eval()
    x = photo_batch(2)
    ids = tok.encode(x)
    for k in (1, 3, tok.max_tokens):
        y = tok.decode(ids[:, :k], steps=2, seed=0)
        assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() <= 1
    y = tok.decode([ids[0, :2], ids[1]], steps=2)
    assert y.shape == x.shape
    with pytest.raises(ValueError, match="1..16"):
        tok.decoder.reconstruct(torch.zeros(1, 17, 4))


def test_rf_tokenizer_trains_through_the_tokenizer_forward():
    tok = build_tokenizer("rf-tiny").train()
    out = tok(photo_batch(4))
    assert out.recon is None and out.losses["flow"].ndim == 0
    (out.losses["flow"] + out.losses["quantizer"]).backward()
    assert tok.encoder.token_dim == 4 and any(p.grad is not None for p in tok.encoder.parameters())


def _save_tiny_vae(path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=32)
    vae.save_pretrained(str(path))
    return vae


def test_latent_space_path_runs_and_keeps_the_vae_frozen_and_out_of_the_weights(tmp_path):
    _save_tiny_vae(tmp_path / "vae")
    dec = _tiny_decoder(vae_path=str(tmp_path / "vae"), latent_scale=0.5)
    assert dec.channels == 4 and dec.patch == 4 and dec.num_patches == 16  # 32 px -> 16x16 latents, 8 px patches
    assert not any(k.startswith("vae") for k in dec.state_dict())
    x = photo_batch(2)
    loss, _ = dec.training_loss(torch.randn(2, 8, 4), None, x)
    loss.backward()
    assert all(p.requires_grad for p in dec.parameters())
    assert not any(p.requires_grad for p in dec.vae.vae.parameters())
    y = dec.eval().reconstruct(torch.randn(2, 3, 4), steps=2, guidance_scale=1.5, seed=0)
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()


@pytest.mark.parametrize("where", ["memory", "dir"])
def test_latent_cache_encodes_each_image_once_and_returns_the_same_latents(tmp_path, where):
    _save_tiny_vae(tmp_path / "vae")
    cache = "memory" if where == "memory" else str(tmp_path / "latents")
    plain = _tiny_decoder(vae_path=str(tmp_path / "vae")).vae
    cached = _tiny_decoder(vae_path=str(tmp_path / "vae"), latent_cache=cache).vae
    x = photo_batch(3)
    reference = plain.encode(x)
    torch.testing.assert_close(cached.encode(x), reference)
    assert (cached.cache.hits, cached.cache.misses) == (0, 3)
    # a batch mixing two seen images and one new one: only the new one is encoded
    y = torch.cat([x[1:], x[:1].flip(-1)])
    torch.testing.assert_close(cached.encode(y), plain.encode(y))
    assert (cached.cache.hits, cached.cache.misses) == (2, 4) and len(cached.cache) == 4
    if where == "dir":  # a new process (a new decoder) reads the files the first one wrote
        again = _tiny_decoder(vae_path=str(tmp_path / "vae"), latent_cache=cache).vae
        torch.testing.assert_close(again.encode(x), reference)
        assert (again.cache.hits, again.cache.misses) == (3, 0)
        # the same directory with another VAE scale is refused, naming the file
        other = _tiny_decoder(vae_path=str(tmp_path / "vae"), latent_cache=cache, latent_scale=0.5).vae
        with pytest.raises(ValueError, match="cache.json"):
            other.encode(x)


def test_latent_cache_without_a_vae_is_refused():
    with pytest.raises(ValueError, match="latent_cache needs a vae_path"):
        _tiny_decoder(latent_cache="memory")


def test_missing_vae_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="AutoencoderKL"):
        _tiny_decoder(vae_path=str(tmp_path / "nowhere"))


def test_rf_export_reloads_to_identical_decodes(tmp_path):
    tok = build_tokenizer("rf-tiny")
    torch.nn.init.normal_(tok.decoder.out_proj.weight, std=0.02)
    tok.train()
    tok(photo_batch(4))  # move BatchNorm statistics away from their defaults
    tok.eval()
    x = photo_batch(3)
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert isinstance(again.decoder, FlowDecoder)
    ids = tok.encode(x)
    assert torch.equal(ids, again.encode(x))
    assert torch.equal(tok.decode(ids[:, :5], steps=3, guidance_scale=2.0, seed=4),
                       again.decode(ids[:, :5], steps=3, guidance_scale=2.0, seed=4))
