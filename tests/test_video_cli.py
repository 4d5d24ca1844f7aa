"""The command line on videos (issue 14, item 6): `vistok encode` writes video token shards ((T', h*w) for a grid
model, (N,) for a 1D one) with a manifest that lists skipped files, resumes and verifies; `TokenDataset` reads them
back with shape and id checks; `decode` / `reconstruct` write mp4s; `eval` measures per-frame PSNR/SSIM and
flicker (rFVD skipped with one note without I3D); the ladder writes a strip of frames per prefix. Tiny untrained
models and videos written by the test (camera pans over a bundled photo, 32-48 px)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.shard_files import shard_members
from vistok.cli import main
from vistok.data.images import load_rgb
from vistok.data.sample import photo_dir
from vistok.data.sample_clips import render_move
from vistok.data.video_io import read_video, write_video
from vistok.shards import TokenDataset
from vistok.tokenizers import build_tokenizer


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder: two pans (mp4, 11 and 6 frames), a GIF, a PNG (a one-frame video) and a corrupt mp4."""
    root = tmp_path_factory.mktemp("clips")
    photo = load_rgb(photo_dir() / "chelsea.png")
    write_video(root / "a_pan.mp4", render_move(photo, "pan", random.Random(1), 11, 48), fps=8)
    write_video(root / "sub" / "b_zoom.mp4", render_move(photo, "zoom-in", random.Random(2), 6, 40), fps=8)
    write_video(root / "c.gif", render_move(photo, "pan", random.Random(3), 5, 32), fps=8)
    photo.resize((40, 40)).save(root / "d_still.png")
    (root / "e_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root


def _export(name: str, path: Path) -> Path:
    torch.manual_seed(0)
    tok = build_tokenizer(name).eval()
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def omni_export(tmp_path_factory) -> Path:
    return _export("omni-tiny", tmp_path_factory.mktemp("omni") / "export")


@pytest.fixture(scope="module")
def larp_export(tmp_path_factory) -> Path:
    return _export("larp-tiny", tmp_path_factory.mktemp("larp") / "export")


def _samples(shards: Path) -> dict[str, tuple[np.ndarray, dict]]:
    out = {}
    for tar in sorted(shards.glob("*.tar")):
        for key, sample in shard_members(tar).items():
            out[key] = (np.load(io.BytesIO(sample["tokens.npy"])), json.loads(sample["json"]))
    return out


def test_encode_videos_with_a_grid_model_resumes_and_reads_back(clips, omni_export, tmp_path, capsys):
    out = tmp_path / "shards"
    main(["encode", "--model", str(omni_export), "--input", str(clips), "--output", str(out), "--workers", "0",
          "--shard-size", "2"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"]["encoded"] == 4
    skipped = manifest["skipped"]
    assert [Path(s["source"]).name for s in skipped] == ["e_broken.mp4"] and skipped[0]["reason"]
    samples = {v[1]["source"]: v for v in _samples(out).values()}
    # 11 frames -> T = 9 (1 + 4k), 3 latent frames of 4 x 4; 6 frames -> 5, 2 latent frames; an image -> 1
    expected = {"a_pan.mp4": (3, 9, 11), "sub/b_zoom.mp4": (2, 5, 6), "c.gif": (2, 5, None), "d_still.png": (1, 1, 1)}
    for source, (latent, frames, source_frames) in expected.items():
        ids, info = samples[source]
        assert ids.shape == (latent, 16) and ids.dtype == np.uint16, source
        assert (info["frames"], info["token_grid"]) == (frames, [latent, 4, 4])
        assert info["source_frames"] == (source_frames or len(read_video(clips / source)[0]))
        assert info["K"] == latent * 16 and info["kind"] == ("image" if source.endswith("png") else "video")
    assert samples["a_pan.mp4"][1]["fps"] == pytest.approx(8) and samples["a_pan.mp4"][1]["size"] == [48, 48]
    # the tokens are the model's own: the same clip encoded in Python gives the same ids
    from vistok import Tokenizer
    from vistok.data.model_clips import load_model_clip

    tok = Tokenizer.from_pretrained(omni_export)
    clip = load_model_clip(clips / "a_pan.mp4", tok.input_spec)
    assert np.array_equal(tok.encode(clip.video[None])[0].numpy(), samples["a_pan.mp4"][0].reshape(-1))
    # a rerun verifies and finds nothing to do
    capsys.readouterr()
    main(["encode", "--model", str(omni_export), "--input", str(clips), "--output", str(out), "--workers", "0",
          "--shard-size", "2"])
    assert "0 encoded in this run" in capsys.readouterr().out
    # TokenDataset: flattened time-major ids with their shape
    read = {s["key"]: s for s in TokenDataset(out)}
    assert len(read) == 4
    by_source = {s["info"]["source"]: s for s in read.values()}
    assert by_source["a_pan.mp4"]["shape"] == (3, 16) and by_source["a_pan.mp4"]["tokens"].shape == (48,)
    # decode: an mp4 per sample at the recorded fps, with the clip's frames
    decoded = tmp_path / "decoded"
    main(["decode", "--model", str(omni_export), "--input", str(out), "--output", str(decoded)])
    mp4s = sorted(decoded.glob("*.mp4"))
    assert len(mp4s) == 4
    key = next(k for k, s in read.items() if s["info"]["source"] == "a_pan.mp4")
    frames, fps = read_video(decoded / f"{key}.mp4")
    assert frames.shape == (9, 32, 32, 3) and fps == pytest.approx(8)


def test_token_dataset_refuses_a_clip_of_the_wrong_width_naming_shard_and_key(omni_export, tmp_path):
    import webdataset as wds

    from vistok.shards.dataset import ShardError, decode_sample

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 15), np.uint16))
    sample = {"__key__": "clip7", "tokens.npy": buf.getvalue(), "json": b"{}"}
    with pytest.raises(ValueError, match=r"x.tar, sample clip7: tokens.npy has shape \(2, 15\), expected \(T', 16\)"):
        decode_sample(sample, "x.tar", 1000, frame_tokens=16)
    buf = io.BytesIO()
    np.save(buf, np.full((2, 16), 1000, np.uint16))
    with wds.TarWriter(str(tmp_path / "bad.tar")) as w:
        w.write({"__key__": "clip8", "tokens.npy": buf.getvalue()})
    with pytest.raises(ShardError, match="clip8: token id 1000 outside the codebook"):
        list(TokenDataset(str(tmp_path / "bad.tar"), codebook_size=1000, frame_tokens=16))


def test_a_1d_video_model_gives_n_tokens_per_clip_and_its_ladder_has_a_row_per_k(clips, larp_export, tmp_path):
    out = tmp_path / "shards"
    main(["encode", "--model", str(larp_export), "--input", str(clips), "--output", str(out), "--workers", "0"])
    samples = {v[1]["source"]: v for v in _samples(out).values()}
    assert set(samples) == {"a_pan.mp4", "sub/b_zoom.mp4", "c.gif", "d_still.png"}
    for ids, info in samples.values():  # a fixed 5-frame clip: longer videos trimmed, an image repeated
        assert ids.shape == (16,) and info["frames"] == 5 and info["token_grid"] == [16]
    ladder = tmp_path / "ladder.png"
    main(["ladder", "--model", str(larp_export), "--input", str(clips / "a_pan.mp4"), "--output", str(ladder)])
    assert ladder.stat().st_size > 1000


def test_eval_reconstruct_and_ladder_of_a_grid_model_on_video_files(clips, omni_export, tmp_path, capsys):
    ev = tmp_path / "eval"
    main(["eval", "--model", str(omni_export), "--input", str(clips), "--output", str(ev)])
    printed = capsys.readouterr().out
    doc = json.loads((ev / "video_metrics.json").read_text())
    assert doc["clips"] == 4 and doc["frames"] == 9 and len(doc["psnr_per_frame"]) == 9
    assert doc["fvd"] is None and "I3D protocol takes 16" in doc["fvd_note"] and "rFVD n/a" in printed
    assert doc["lpips_vgg"] > 0 and "LPIPS-VGG" in printed
    assert doc["protocol"]["lpips_vgg"]["images"] == "4 clips x 9 frames"
    assert 0 < doc["psnr"] < 100 and (ev / "video_metrics.csv").is_file() and (ev / "video_frames.png").is_file()
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(omni_export), "--input", str(clips), "--output", str(ev), "--i3d", "/no/i3d.pt"])
    assert "i3d" in capsys.readouterr().err
    rec = tmp_path / "rec"
    main(["reconstruct", "--model", str(omni_export), "--input", str(clips), "--output", str(rec)])
    assert "mean per-frame PSNR" in capsys.readouterr().out
    assert sorted(p.relative_to(rec).as_posix() for p in rec.rglob("*.mp4")) == [
        "a_pan.mp4", "c.mp4", "d_still.mp4", "sub/b_zoom.mp4"]
    assert read_video(rec / "a_pan.mp4")[0].shape == (9, 32, 32, 3)
    ladder = tmp_path / "ladder.png"
    main(["ladder", "--model", str(omni_export), "--input", str(clips / "a_pan.mp4"), "--output", str(ladder)])
    printed = capsys.readouterr().out
    assert ladder.stat().st_size > 1000
    assert printed.splitlines()[0].split() == ["K", "16", "32", "48"]  # one row per latent-frame prefix


def test_the_video_demo_runs_end_to_end_with_a_few_steps(tmp_path):
    """`make demo-video` in miniature: training (2 steps), export, held-out evaluation, ladder,
    token shards and the summary."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "demo_video.py"), "--out", str(tmp_path / "demo"),
                        "--steps", "2", "--fvd-clips", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "held-out sample clips: 12 clips of 9 frames at 32 px, 192 tokens each" in r.stdout
    assert "rFVD " in r.stdout and "on 2 held-out clips of 17 frames" in r.stdout and "LPIPS-VGG" in r.stdout
    out = tmp_path / "demo"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 12 and len(summary["psnr_per_frame"]) == 9 and summary["shards"]["encoded"] == 12
    assert summary["rfvd"] > 0 and summary["rfvd_protocol"]["weights_sha256"].startswith("af5c50f0")
    for f in ("eval/video_frames.png", "eval/video_metrics.json", "ladder.png", "shards/manifest.json",
              "export/tokens.json"):
        assert (out / f).is_file(), f
