"""Linear paths and their PCA initialisation: the demo recipe's start (vistok.nn.linear_path, pca_init)."""

import pytest
import torch

from tests.conftest import SEED, photo_batch
from vistok.metrics.psnr import per_image_psnr
from vistok.tokenizers import build_tokenizer
from vistok.tokenizers.dropout import pow2_lengths
from vistok.tokenizers.pca_init import pca_init

FIT = photo_batch(512, split="train", seed=SEED + 7)


def _initialised(num_tokens: int = 16):
    torch.manual_seed(SEED)
    tok = build_tokenizer("titok-tiny", num_tokens=num_tokens, dropout="nested", linear_path=True)
    stats = pca_init(tok, FIT)
    return tok.eval(), stats


def test_pca_initialisation_is_an_ordered_codec_before_any_training():
    tok, stats = _initialised()
    assert 0.5 < stats["explained_variance"] < 1
    x = photo_batch(24, split="photos", seed=SEED)  # held-out photos resized whole: never fitted
    ids = tok.encode(x)
    quality = [float(per_image_psnr(tok.decode(ids[:, :k]), x).mean()) for k in pow2_lengths(tok.max_tokens)]
    assert all(b > a for a, b in zip(quality, quality[1:])), quality  # every doubling of K helps
    assert quality[-1] - quality[0] > 2.0, quality
    # The transformers start at zero: the tokenizer is exactly its linear paths.
    z = tok.encoder(x)
    torch.testing.assert_close(z, tok.encoder.linear_path(x))
    codes = tok.quantizer(z).codes
    torch.testing.assert_close(tok.decoder(codes), tok.decoder.linear_path(codes))


def test_dropped_tokens_contribute_nothing_to_the_linear_path():
    tok, _ = _initialised()
    codes = tok.quantizer(tok.encoder(FIT[:4])).codes  # (4, 16, 4)
    path = tok.decoder.linear_path
    valid = torch.arange(16)[None] < torch.tensor([1, 3, 8, 16])[:, None]
    masked = path(codes, valid)
    for i, k in enumerate([1, 3, 8, 16]):
        torch.testing.assert_close(masked[i], path(codes[i : i + 1, :k])[0])  # same as a K-token prefix


def test_pca_initialisation_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="linear_path=True"):
        pca_init(build_tokenizer("titok-tiny"), FIT)
    tok = build_tokenizer("titok-tiny", num_tokens=16, linear_path=True)
    with pytest.raises(ValueError, match="at least 64 images"):
        pca_init(tok, FIT[:10])
    with pytest.raises(ValueError, match="values each"):
        pca_init(tok, torch.zeros(100, 3, 16, 16))


def test_frozen_linear_paths_stay_put_while_the_rest_trains():
    from vistok.trainers.system import TokenizerSystem

    tok, _ = _initialised()
    system = TokenizerSystem(tok, lr=1e-3, lr_scales={"linear_path": 0.0, "decoder.head": 0.5})

    class _Trainer:
        estimated_stepping_batches = 10

    system._trainer = _Trainer()
    opt = system.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for n, p in tok.named_parameters() if "linear_path" in n)
    head = {id(p) for n, p in tok.named_parameters() if "decoder.head" in n}
    assert {g["lr"] for g in opt.param_groups if any(id(p) in head for p in g["params"])} == {5e-4}
    before = {n: p.detach().clone() for n, p in tok.named_parameters()}
    tok.train()
    for _ in range(3):
        loss = (tok(FIT[:16]).recon - FIT[:16]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in tok.named_parameters():
        if "linear_path" in n:
            assert torch.equal(p, before[n]), n
    assert any(not torch.equal(p, before[n]) for n, p in tok.named_parameters() if "decoder.head" in n)


def test_fit_initialises_from_pca_and_a_resumed_run_keeps_its_checkpoint_weights(tmp_path):
    from pathlib import Path

    from tests.test_configs import _tiny_overrides
    from vistok.trainers.cli import cli_main

    text = (Path(__file__).parents[1] / "configs" / "demo.yaml").read_text()
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"  # PCA on 512, then on 256 images
    first.write_text(text.replace("num_images: 4096", "num_images: 512"))
    second.write_text(text.replace("num_images: 4096", "num_images: 256"))
    args = [a for a in _tiny_overrides(first, tmp_path) if "max_steps" not in a]
    cli = cli_main(["fit", "--config", str(first), "--trainer.max_steps=2", *args])
    weight = cli.model.tokenizer.encoder.linear_path.proj.weight.detach().clone()
    assert weight.abs().sum() > 0 and cli.trainer.global_step == 2
    assert not cli.model.tokenizer.encoder.linear_path.proj.weight.requires_grad  # frozen by lr_scales
    ckpt = next(tmp_path.rglob("last.ckpt"))
    resumed = cli_main(["fit", "--config", str(second), "--trainer.max_steps=3", *args, f"--ckpt_path={ckpt}"])
    assert resumed.trainer.global_step == 3
    # A new initialisation (other images) would differ; the restored checkpoint wins.
    torch.testing.assert_close(resumed.model.tokenizer.encoder.linear_path.proj.weight, weight)


def test_colour_loss_weighs_a_shift_of_the_mean_colour_and_ignores_texture():
    from vistok.trainers.losses import reconstruction_loss

    x = FIT[:4]
    shift = torch.tensor([0.1, -0.05, 0.02]).view(1, 3, 1, 1)
    plain, weighted = reconstruction_loss(x + shift, x), reconstruction_loss(x + shift, x, colour=4.0)
    torch.testing.assert_close(weighted, 5 * plain)  # a pure colour shift: the colour term adds 4x the L2
    texture = torch.randn_like(x) * 0.1
    texture = texture - texture.mean((-2, -1), keepdim=True)  # same mean colour, other pixels
    torch.testing.assert_close(reconstruction_loss(x + texture, x, colour=4.0), reconstruction_loss(x + texture, x))
