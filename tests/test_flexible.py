"""Flexible-length tokens: nested dropout, tail drop, causal registers, adaptive encoding, the ladder."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SEED, photo_batch
from vistok.metrics.psnr import per_image_psnr
from vistok.tokenizers import build_tokenizer
from vistok.tokenizers.dropout import NestedDropout, TailDrop, pow2_lengths, sample_lengths
from vistok.tokenizers.pca_init import pca_init
from vistok.trainers.losses import reconstruction_loss

TRAIN = photo_batch(16, split="train", seed=SEED)


@pytest.fixture(scope="module")
def trained():
    """The demo recipe at test size (~10 s on 2 cores): a tiny nested-dropout tokenizer whose linear paths are
    PCA-initialised on 512 training crops, then 150 steps on 16 of them. The ordering it must keep is large:
    one token carries 4 principal components, sixteen carry 64."""
    torch.manual_seed(SEED)
    tok = build_tokenizer("titok-tiny", num_tokens=16, dropout="nested", linear_path=True)
    tok.token_dropout.full_prob = 0.25
    pca_init(tok, photo_batch(512, split="train", seed=SEED + 100))
    x = TRAIN
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3)
    tok.train()
    for _ in range(150):
        loss = reconstruction_loss(tok(x).recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tok.eval()


def test_reconstruction_error_falls_with_the_number_of_tokens(trained):
    x = TRAIN
    ids = trained.encode(x)
    mse = [float((trained.decode(ids[:, :k]) - x).pow(2).mean()) for k in pow2_lengths(trained.max_tokens)]
    for shorter, longer in zip(mse, mse[1:]):
        assert longer <= shorter * 1.02, mse  # non-increasing within 2%
    assert mse[-1] < 0.5 * mse[0], mse


def test_adaptive_encoding_meets_its_target_wherever_the_full_length_does(trained):
    x = torch.cat([TRAIN, photo_batch(8)])  # fitted images and held-out ones
    full = per_image_psnr(trained.decode(trained.encode(x)), x)
    target = float(full.median())
    result = trained.encode_adaptive(x, target_psnr=target)
    assert len(result) == len(x) and all(t.ndim == 1 and t.dtype == torch.int64 for t in result)
    reachable = full >= target
    # Quality need not rise with K for every image (quantization noise of a later token can cost a smooth
    # image a little), so an image that misses at N may still meet the target with fewer tokens.
    assert not (result.unreachable & reachable).any()
    met = ~result.unreachable
    assert (result.psnr[met] >= target).all() and (result.psnr[result.unreachable] < target).all()
    assert (result.lengths[result.unreachable] == trained.max_tokens).all()
    assert result.lengths.float().mean() < trained.max_tokens  # some images need fewer tokens
    recon = trained.decode(list(result))
    torch.testing.assert_close(per_image_psnr(recon, x), result.psnr, atol=1e-3, rtol=1e-4)
    assert sum(result.histogram().values()) == len(x)


def test_prefix_decoding_encodes_once_and_decodes_each_k(trained, monkeypatch):
    from vistok.tokenizers import dropout, prefixes

    assert dropout.pow2_lengths is prefixes.pow2_lengths and prefixes.pow2_lengths(12) == [1, 2, 4, 8, 12]
    x = TRAIN[:4]
    ids = trained.encode(x)
    calls = []
    encode = trained.encode
    monkeypatch.setattr(trained, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    got = list(prefixes.prefix_reconstructions(trained, x))
    assert len(calls) == 1 and [k for k, _ in got] == pow2_lengths(trained.max_tokens)
    for k, recon in got:
        torch.testing.assert_close(recon, trained.decode(ids[:, :k]))
    assert [k for k, _ in prefixes.decode_prefixes(trained, ids, [3, 5])] == [3, 5]


def test_adaptive_psnr_is_the_psnr_eval_reports(trained, tmp_path):
    """For the images adaptive encoding gave K tokens, `vistok eval --num-tokens K` reports the mean of the
    PSNRs the adaptive encoding reported (one PSNR definition: 8-bit, per image, capped)."""
    from vistok.data.images import tensor_to_uint8
    from vistok.evaluate import EvalSettings, evaluate

    x = torch.cat([TRAIN[:6], photo_batch(6)])
    target = float(per_image_psnr(trained.decode(trained.encode(x)), x).median())
    result = trained.encode_adaptive(x, target_psnr=target)
    model = trained.save_pretrained(tmp_path / "model")
    for k in sorted(set(result.lengths.tolist())):
        rows = (result.lengths == k).nonzero().flatten().tolist()
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        for i in rows:
            Image.fromarray(tensor_to_uint8(x[i])).save(folder / f"{i:02d}.png")
        report = evaluate(EvalSettings(model=str(model), input=str(folder), output=str(tmp_path / f"eval{k}"),
                                       num_tokens=[k], baselines=[], fid=False, progress=False, device="cpu"))
        assert report["num_images"] == len(rows)
        assert report["rows"][0]["psnr"] == pytest.approx(float(result.psnr[rows].mean()), abs=1e-3)


@pytest.mark.parametrize("distribution", ["uniform", "pow2", "uniform_pow2", "bucket_uniform"])
def test_length_sampling_follows_its_distribution(distribution):
    n, draws = 16, 20000
    g = torch.Generator().manual_seed(0)
    k = sample_lengths(draws, n, distribution, g)
    assert k.min() >= 1 and k.max() <= n
    counts = np.bincount(k.numpy(), minlength=n + 1)[1:].astype(float)
    levels = pow2_lengths(n)  # 1, 2, 4, 8, 16
    expected = np.zeros(n)
    if distribution == "uniform":
        expected[:] = 1 / n
    elif distribution == "pow2":
        expected[[lv - 1 for lv in levels]] = 1 / len(levels)
    elif distribution == "uniform_pow2":  # FlexTok: a uniform K rounded up to a power of two
        prev = 0
        for lv in levels:
            expected[lv - 1] = (lv - prev) / n
            prev = lv
    else:  # a bucket (prev, 2^j] uniformly, then uniformly inside it
        prev = 0
        for lv in levels:
            expected[prev:lv] = 1 / len(levels) / (lv - prev)
            prev = lv
    support = expected > 0
    assert counts[~support].sum() == 0
    chi2 = ((counts[support] - draws * expected[support]) ** 2 / (draws * expected[support])).sum()
    dof = support.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)  # ~5 sigma


def test_nested_dropout_masks_per_sample_and_full_prob_adds_full_length():
    drop = NestedDropout(8, "uniform", full_prob=0.5).train()
    codes = torch.randn(4000, 8, 3)
    out, valid = drop(codes)
    assert torch.equal(out, codes) and valid.shape == (4000, 8)
    k = valid.sum(1)
    assert torch.equal(valid, torch.arange(8)[None] < k[:, None])  # prefixes only
    assert abs(float((k == 8).float().mean()) - (0.5 + 0.5 / 8)) < 0.03
    drop.eval()
    assert drop(codes)[1] is None


def test_tail_drop_feeds_k_tokens_to_the_decoder_and_all_n_to_the_quantizer():
    tok = build_tokenizer("onedpiece-tiny", num_tokens=16).train()
    seen = {}
    tok.decoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("decoder", args[0].shape[1]))
    tok.quantizer.register_forward_pre_hook(lambda m, args: seen.__setitem__("quantizer", args[0].shape[1]))
    ks = set()
    for _ in range(30):
        out = tok(photo_batch(4))
        ks.add(seen["decoder"])
        assert seen["quantizer"] == 16 and out.quant.indices.shape == (4, 16)
    assert len(ks) > 5 and max(ks) <= 16 and min(ks) >= 1
    assert isinstance(tok.token_dropout, TailDrop)


def test_causal_registers_do_not_see_later_registers():
    tok = build_tokenizer("flextok-tiny", num_tokens=16).eval()
    x = photo_batch(2)
    before = tok.encoder(x)
    i = 6
    with torch.no_grad():
        tok.encoder.latent_tokens[:, i:] += torch.randn_like(tok.encoder.latent_tokens[:, i:])
    after = tok.encoder(x)
    torch.testing.assert_close(after[:, :i], before[:, :i], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(after[:, i:], before[:, i:])


def test_ladder_cli_writes_a_png(tmp_path, trained):
    trained.save_pretrained(tmp_path / "model")
    img = tmp_path / "in.png"
    Image.fromarray(((photo_batch(1, size=64)[0].permute(1, 2, 0) + 1) * 127.5).byte().numpy()).save(img)
    exe = Path(sys.executable).with_name("vistok")
    r = subprocess.run([str(exe), "ladder", "--model", str(tmp_path / "model"), "--input", str(img),
                        "--output", str(tmp_path / "ladder.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(tmp_path / "ladder.png") as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]
    assert "K=" not in r.stderr and "PSNR" in r.stdout
