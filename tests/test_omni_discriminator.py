"""OmniTokenizer's discriminator options (issue 24): the learned input noise (`--apply_noise`) starts as the
noise-free network and draws from its own seeded generator, which the training RNG seeds, saves and swaps for
validation like the tokenizer's; the 3-D head's norm + LeakyReLU after the last conv; the recipes switch both on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from vistok.configurable import from_config, to_config
from vistok.nn.discriminator import InputNoise, NLayerDiscriminator, NLayerDiscriminator3D
from vistok.tokenizers import build_tokenizer
from vistok.trainers.rng import TrainingRNG, random_modules

CONFIGS = Path(__file__).parents[1] / "configs"


def _pair(cls, **kw):
    """(the discriminator without the options, the same weights with them)."""
    plain = cls(ndf=8, n_layers=2, norm="group", **{k: v for k, v in kw.items() if k == "padding"})
    other = cls(ndf=8, n_layers=2, norm="group", **kw)
    missing, unexpected = other.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    return plain, other, missing


def _input(cls) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32) if cls is NLayerDiscriminator else torch.randn(2, 3, 8, 32, 32)


@pytest.mark.parametrize("cls", [NLayerDiscriminator, NLayerDiscriminator3D])
def test_noise_weight_starts_at_zero_so_the_network_is_the_noise_free_one_until_it_grows(cls):
    plain, noisy, missing = _pair(cls, noise=True)
    assert missing == ["noise.weight"]  # every other weight keeps its name
    assert torch.equal(noisy.noise.weight, torch.zeros(3))
    x = _input(cls)
    assert torch.equal(noisy(x), plain(x))
    for a, b in zip(noisy.features(x), plain.features(x), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        noisy.noise.weight.fill_(0.5)
    assert not torch.allclose(noisy(x), plain(x))
    noisy.reset_parameters()  # the constructor's initialisation puts the weight back to zero
    assert torch.equal(noisy.noise.weight, torch.zeros(3))
    # the weight learns: the discriminator's loss reaches it
    noisy.noise.weight.data.fill_(0.1)
    noisy(x).mean().backward()
    assert noisy.noise.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 4, 8, 8)])
def test_one_noise_map_per_sample_is_shared_by_the_channels(shape):
    noise = InputNoise(3)
    noise.weight.data = torch.tensor([1.0, 2.0, -3.0])
    out = noise(torch.zeros(shape))
    assert out.shape == shape
    torch.testing.assert_close(out[:, 1], 2 * out[:, 0])
    torch.testing.assert_close(out[:, 2], -3 * out[:, 0])
    assert not torch.allclose(out[0, 0], out[1, 0])  # one map per sample
    assert noise(torch.zeros(shape, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("cls", [NLayerDiscriminator, NLayerDiscriminator3D])
def test_the_noise_is_drawn_from_the_module_generator(cls):
    d = cls(ndf=8, n_layers=2, norm="group", noise=True)
    with torch.no_grad():
        d.noise.weight.fill_(1.0)
    x = _input(cls)

    def logits(seed: int) -> torch.Tensor:
        d.noise.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(99)  # the global RNG is not what the noise draws from
        return d(x)

    assert torch.equal(logits(1), logits(1))
    assert not torch.allclose(logits(1), logits(2))
    d.noise.generator = None  # no generator: torch's global RNG
    torch.manual_seed(5)
    a = d(x)
    torch.manual_seed(5)
    assert torch.equal(d(x), a)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_logits_puts_a_one_channel_norm_and_leaky_relu_after_the_last_conv(norm):
    plain = NLayerDiscriminator3D(ndf=8, n_layers=2, norm=norm)
    head = NLayerDiscriminator3D(ndf=8, n_layers=2, norm=norm, norm_logits=True)
    missing, unexpected = head.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(f"main.{len(plain.main)}.") for k in missing)  # added after
    x = torch.randn(2, 3, 8, 32, 32)
    z, y = plain(x), head(x)
    assert y.shape == z.shape == (2, 1, 5, 11, 11)  # padding 2
    norm_layer = head.main[len(plain.main)]
    if norm == "batch":  # the training-mode statistics of the batch's logits (one channel)
        zn = (z - z.mean()) / torch.sqrt(z.var(unbiased=False) + norm_layer.eps)
        zn = zn * norm_layer.weight.view(1, -1, 1, 1, 1) + norm_layer.bias.view(1, -1, 1, 1, 1)
    elif norm == "group":
        zn = norm_layer(z)
    else:
        zn = z
    torch.testing.assert_close(y, F.leaky_relu(zn, 0.2))
    assert not torch.allclose(y, z)
    # features: the same stages, then the head's output as the logits (the official res[1:])
    fp, fh = plain.features(x), head.features(x)
    assert len(fh) == len(fp) == 2 + 2
    for a, b in zip(fh[:-1], fp[:-1]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fh[-1], y)
    y.mean().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_the_options_are_recorded_and_rebuilt():
    d3 = NLayerDiscriminator3D(ndf=8, n_layers=2, noise=True, norm_logits=True)
    cfg = to_config(d3)
    assert cfg["init_args"]["noise"] is True and cfg["init_args"]["norm_logits"] is True
    rebuilt = from_config(cfg)
    assert rebuilt.init_args == d3.init_args and isinstance(rebuilt.noise, InputNoise)
    assert to_config(NLayerDiscriminator(ndf=8, noise=True))["init_args"]["noise"] is True
    # defaults: today's network, today's names
    assert NLayerDiscriminator(ndf=8).init_args["noise"] is False
    assert not any(k.startswith("noise.") for k in NLayerDiscriminator3D(ndf=8).state_dict())


def test_training_rng_covers_the_discriminators_keeping_the_tokenizer_names():
    tok = build_tokenizer("titok-tiny", dropout="nested")
    image = NLayerDiscriminator(ndf=8, n_layers=2, norm="group", noise=True)
    video = NLayerDiscriminator3D(ndf=8, n_layers=2, norm="group", noise=True)
    rng = TrainingRNG(tok, {"discriminator": image, "video_discriminator": None})
    assert list(rng.modules()) == [*random_modules(tok), "discriminator.noise"]
    rng = TrainingRNG(tok, {"discriminator": image, "video_discriminator": video})
    rng.seed(7)
    alone = TrainingRNG(tok).modules()
    names = list(rng.modules())
    assert names[: len(alone)] == list(alone)  # an older checkpoint's names still match
    assert names[len(alone):] == ["discriminator.noise", "video_discriminator.noise"]
    state = rng.state()
    assert {"discriminator.noise", "video_discriminator.noise"} <= set(state["generators"])
    with torch.no_grad():
        image.noise.weight.fill_(1.0)
    x = torch.randn(2, 3, 32, 32)
    first = image(x)
    rng.load(state)  # a resume puts the generator back: the same draw
    assert torch.equal(image(x), first)
    # validation: fixed-seed generators swapped in (the same noise every time), the training ones put back
    rng.enter_validation()
    v1 = image(x)
    rng.leave_validation()
    rng.enter_validation()
    assert torch.equal(image(x), v1)
    rng.leave_validation()
    rng.load(state)
    assert torch.equal(image(x), first)


@pytest.mark.parametrize("name, key, head", [("omnitokenizer_256", "discriminator", False),
                                             ("omnitokenizer_256_joint", "video_discriminator", True),
                                             ("omnitokenizer_256_vae", "video_discriminator", True)])
def test_the_omnitokenizer_recipes_switch_on_the_official_discriminator_options(name, key, head):
    model = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]
    disc = from_config(model[key])
    assert disc.init_args["noise"] is True
    assert disc.init_args.get("norm_logits", False) is head
