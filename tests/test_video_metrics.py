"""Video metrics (issue 14, item 6): per-frame PSNR/SSIM, temporal flicker, and `evaluate_videos` with rFVD
from a randomly initialised network that has the Kinetics-400 I3D TorchScript's interface (a tiny 3D conv net
saved with torch.jit.save), checked against the image FID's Frechet code. Clips are the embedded sample clips."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from vistok.data.sample_clips import SampleClips
from vistok.data.videos import ClipSpec, collate_videos
from vistok.metrics import evaluate_videos
from vistok.metrics.fid import FID
from vistok.metrics.fvd import I3DFeatures
from vistok.metrics.pixel import psnr_ssim
from vistok.metrics.video import per_frame_psnr_ssim, temporal_flicker


class TinyI3D(nn.Module):
    """(B, 3, 16, 224, 224) in [-1, 1] -> (B, 400): the interface of the Kinetics-400 I3D TorchScript,
    including its keyword arguments (StyleGAN-V's script takes rescale / resize / return_features)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (4, 4, 4), stride=(4, 4, 4))
        self.fc = nn.Linear(8 * 4 * 7 * 7, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        assert x.shape[2:] == (16, 224, 224) and not rescale and not resize and return_features
        x = nn.functional.avg_pool3d(x, (1, 8, 8))  # (B, 3, 16, 28, 28)
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def i3d(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nets") / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(TinyI3D().eval()), str(path))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clips(cache) -> torch.Tensor:
    """The 12 held-out sample clips, (12, 3, 17, 32, 32)."""
    ds = SampleClips("val", ClipSpec(frames=17, size=32, fps=8), cache_dir=cache)
    return torch.stack([ds[i]["video"] for i in range(len(ds))])


def noisy(scale: float, seed: int = 0):
    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return (x + scale * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return reconstruct


def test_per_frame_psnr_ssim_are_the_image_metrics_on_every_frame(clips):
    real, fake = clips[:3], noisy(0.1)(clips[:3])
    psnr, ssim = per_frame_psnr_ssim(real, fake)
    assert psnr.shape == ssim.shape == (3, 17)
    p5, s5 = psnr_ssim(real[:, :, 5], fake[:, :, 5])  # frame 5 of each clip, as images
    assert torch.allclose(psnr[:, 5], p5) and torch.allclose(ssim[:, 5], s5)
    same_p, same_s = per_frame_psnr_ssim(real, real)
    assert (same_p == 100).all() and torch.allclose(same_s, torch.ones_like(same_s))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        per_frame_psnr_ssim(real[:, :, 0], fake[:, :, 0])


def test_flicker_separates_steady_errors_from_errors_that_change_every_frame(clips):
    real = clips[:4]
    steady = (real + 0.1).clamp(-1, 1)  # the same error on every frame
    g = torch.Generator().manual_seed(0)
    shimmer = (real + 0.1 * torch.sign(torch.randn(real.shape, generator=g))).clamp(-1, 1)
    frozen = real[:, :, :1].expand_as(real)  # the first frame held
    psnr_steady = per_frame_psnr_ssim(real, steady)[0].mean()
    assert abs(psnr_steady - per_frame_psnr_ssim(real, shimmer)[0].mean()) < 4  # about the same PSNR ...
    f_steady, f_shimmer = temporal_flicker(real, steady), temporal_flicker(real, shimmer)
    assert (f_steady["flicker"] < 2).all() and (f_shimmer["flicker"] > 10).all()  # ... very different flicker
    f_frozen = temporal_flicker(real, frozen)
    assert (f_frozen["motion_fake"] == 0).all() and (f_frozen["motion_real"] > 0.5).all()
    assert torch.allclose(f_frozen["flicker"], f_frozen["motion_real"])
    assert temporal_flicker(real[:, :, :1], real[:, :, :1])["flicker"].isnan().all()  # one frame: no flicker


def test_evaluate_videos_writes_json_csv_strip_and_an_fvd_equal_to_the_image_frechet_code(clips, i3d, tmp_path):
    reconstruct = noisy(0.15)
    out = evaluate_videos(reconstruct, clips, i3d=i3d, out_dir=tmp_path / "eval", batch_size=5, progress=False)
    assert out["clips"] == 12 and out["frames"] == 17 and len(out["psnr_per_frame"]) == 17
    assert 10 < out["psnr"] < 30 and 0 < out["ssim"] < 1 and out["flicker"] > 1 and out["fvd"] > 0
    assert 0 < out["lpips_vgg"] < 1 and 0 < out["lpips_alex"] < 1  # per-frame LPIPS, the real networks
    # the same features through the image FID's statistics and Frechet distance give the same number
    net, fid = I3DFeatures(i3d), FID.__new__(FID)
    from vistok.metrics.frechet import GaussianStats

    fid.real, fid.fake = GaussianStats(400), GaussianStats(400)
    for x in clips.split(5):
        fid.update_features(net(x), real=True)
        fid.update_features(net(reconstruct(x)), real=False)
    assert out["fvd"] == pytest.approx(float(fid.compute()), rel=1e-6)
    same = evaluate_videos(lambda x: x, clips, i3d=i3d, progress=False)
    spread = 2 * float(fid.real.mean_cov()[1].trace())  # the scale of the distance
    assert abs(same["fvd"]) < 1e-5 * spread and same["psnr"] == 100 and same["flicker"] == 0
    assert same["lpips_vgg"] == 0 and same["lpips_alex"] == 0
    worse = evaluate_videos(noisy(0.4), clips, i3d=i3d, progress=False, lpips=False)
    assert worse["fvd"] > out["fvd"] and worse["psnr"] < out["psnr"]
    saved = json.loads((tmp_path / "eval" / "video_metrics.json").read_text())
    assert saved["fvd"] == pytest.approx(out["fvd"]) and len(saved["per_clip"]) == 12
    protocol = saved["fvd_protocol"]
    assert protocol["network"] == f"TorchScript {i3d}" and len(protocol["weights_sha256"]) == 64
    assert protocol["frames"] == 16 and protocol["clips"] == 12 and protocol["resize"].startswith("224x224 bilinear")
    assert protocol["reference_stats"] == "the 12 original clips" and saved["protocol"]["fvd"] == protocol
    assert saved["protocol"]["lpips_vgg"]["weights_sha256"].startswith("2ecbe4ce")
    with open(tmp_path / "eval" / "video_metrics.csv") as f:
        lines = f.read().splitlines()
    assert any(line.startswith("# fvd: network=TorchScript") for line in lines)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert len(rows) == 12 and float(rows[0]["psnr"]) == pytest.approx(saved["per_clip"][0]["psnr"])
    strip = Image.open(tmp_path / "eval" / "video_frames.png")
    assert strip.size[0] > 2 * strip.size[1] / 3  # 8 frame columns, 8 rows (4 clips x original / reconstruction)
    assert np.asarray(strip.convert("L")).std() > 20  # pictures, not a blank canvas


def test_fvd_is_skipped_with_one_clear_note_and_bad_calls_fail_early(clips, cache, i3d, tmp_path, caplog):
    loader = DataLoader(SampleClips("val", ClipSpec(frames=8, size=32, fps=8), cache_dir=cache),
                        batch_size=4, collate_fn=collate_videos)
    with caplog.at_level(logging.WARNING, logger="vistok.metrics"):
        out = evaluate_videos(noisy(0.1), loader, out_dir=tmp_path / "no_i3d", progress=False, lpips=False)
    assert out["fvd"] is None and "the clips have 8 frames, the I3D protocol takes 16" in out["fvd_note"]
    assert caplog.text.count("rFVD skipped") == 1
    with open(tmp_path / "no_i3d" / "video_metrics.csv") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        assert next(rows)["key"] == "sample-clips-val-000000"  # keys from the loader's batches
    off = evaluate_videos(noisy(0.1), clips[:2], fvd=False, lpips=False, progress=False)
    assert off["fvd"] is None and "--no-fvd" in off["fvd_note"]
    short = evaluate_videos(noisy(0.1), clips[:, :, :8], i3d=i3d, progress=False, lpips=False)
    assert short["fvd"] is None and "8 frames" in short["fvd_note"] and "16" in short["fvd_note"]
    called = []
    with pytest.raises(FileNotFoundError, match="I3D weights not found.*missing.pt"):
        evaluate_videos(lambda x: called.append(1) or x, clips, i3d=tmp_path / "missing.pt", progress=False)
    assert not called  # the missing network is reported before any reconstruction
    with pytest.raises(ValueError, match=r"reconstruct returned \(2, 3, 17, 32\)"):
        evaluate_videos(lambda x: x[:, :, :, :, 0], clips[:2], progress=False)
    with pytest.raises(ValueError, match=r"clips must be \(B, 3, T, H, W\)"):
        evaluate_videos(lambda x: x, clips[:, :, 0], progress=False)
