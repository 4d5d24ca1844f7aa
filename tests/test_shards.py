"""Token shards (issue 5): encode job, manifest, resume after kill -9, two ranks, bad inputs, reading back,
and the export directory round trip for VQ and FSQ models."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import photo_batch
from vistok import Tokenizer
from vistok.checkpoint import load_checkpoint
from vistok.cli import main
from vistok.configurable import to_config
from vistok.data.images import load_rgb, pil_to_tensor, resize_crop, tensor_to_uint8
from vistok.quantizers.vq import VQQuantizer
from vistok.shards import TokenDataset, collate_tokens, encode_to_shards, read_manifest
from vistok.shards.manifest import sha256_file
from vistok.tokenizers import build_tokenizer
from vistok.tokenizers.registry import _vit_pair

K = 6
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny matmuls: threads only contend on a shared CPU


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save_pngs(root: Path, n: int, size: int, seed: int = 0, nested: bool = True) -> list[Path]:
    x = photo_batch(n, size=size, split="train", seed=seed)
    files = []
    for i in range(n):
        f = root / (f"sub{i % 3}" if nested and i % 2 else "") / f"img{i:04d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tensor_to_uint8(x[i])).save(f)
        files.append(f)
    return files


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    _save_pngs(root, 24, 40)
    (root / "sub1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


@pytest.fixture(scope="module")
def encoded(model_dir, image_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    summary = encode_to_shards(model_dir, image_dir, out, num_tokens=K, batch_size=5, shard_size=7, workers=2,
                               progress=False)
    assert summary.complete and summary.encoded == 24 and summary.skipped == 1
    return out


def _shard_samples(out: Path) -> dict[str, dict]:
    samples = {}
    for s in read_manifest(out)["shards"]:
        with tarfile.open(out / s["name"]) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                assert samples.setdefault(key, {}).get(ext) is None, f"{m.name} twice"
                samples[key][ext] = tar.extractfile(m).read()
    return samples


def _check_manifest_matches_files(out: Path) -> dict:
    doc = read_manifest(out)
    assert doc["complete"]
    for s in doc["shards"]:
        f = out / s["name"]
        assert sha256_file(f) == s["sha256"] and f.stat().st_size == s["bytes"], s["name"]
        with tarfile.open(f) as tar:
            assert len(tar.getnames()) == 2 * s["samples"], s["name"]
    on_disk = sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    assert on_disk == sorted(s["name"] for s in doc["shards"]), "no partial or unlisted files are left"
    assert doc["totals"]["encoded"] == sum(s["samples"] for s in doc["shards"])
    return doc


def test_shards_decode_exactly_like_direct_decode_and_manifest_matches_files(encoded, model_dir, image_dir):
    doc = _check_manifest_matches_files(encoded)
    assert doc["tokenizer"]["tokens"]["codebook_size"] == 1000 and doc["job"]["num_tokens"] == K
    assert [s["source"] for s in doc["skipped"]] == ["sub1/broken.png"]
    assert "broken.png" in doc["skipped"][0]["reason"]
    samples = _shard_samples(encoded)
    assert len(samples) == 24
    tok = Tokenizer.from_pretrained(model_dir)
    files = sorted(p for p in image_dir.rglob("img*.png"))
    x = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), 32)) for f in files])
    direct = tok.encode(x, num_tokens=K)
    by_key = {}
    for f in files:
        key = str(f.relative_to(image_dir).with_suffix(""))
        ids = np.load(io.BytesIO(samples[key]["tokens.npy"]))
        assert ids.dtype == np.uint16 and ids.shape == (K,)
        info = json.loads(samples[key]["json"])
        assert info == {"source": str(f.relative_to(image_dir)), "size": [40, 40], "K": K}
        by_key[key] = torch.from_numpy(ids.astype(np.int64))
    from_shards = torch.stack([by_key[str(f.relative_to(image_dir).with_suffix(""))] for f in files])
    assert torch.equal(from_shards, direct)
    assert torch.equal(tok.decode(from_shards), tok.decode(direct))


def test_token_dataset_reads_every_sample_and_collate_pads_with_a_mask(encoded):
    ds = TokenDataset(encoded)
    assert ds.pad_id == 1002  # the `pad` special id from tokens.json
    items = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert len(items) == 24 and {len(set(i["key"] for i in items))} == {24}
    assert all(i["tokens"].dtype == torch.int64 and i["length"] == K and i["label"] == -1 for i in items)
    batch = collate_tokens([
        {"key": "a", "tokens": torch.tensor([5, 6, 7]), "length": 3, "label": 2},
        {"key": "b", "tokens": torch.tensor([9]), "length": 1, "label": -1},
    ], pad_id=1002)
    assert batch["tokens"].tolist() == [[5, 6, 7], [9, 1002, 1002]]
    assert batch["mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["length"].tolist() == [3, 1] and batch["label"].tolist() == [2, -1] and batch["key"] == ["a", "b"]


def test_strict_makes_a_corrupt_image_fatal_naming_it(model_dir, image_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode", "--model", str(model_dir), "--input", str(image_dir), "--output", str(tmp_path / "o"),
              "--strict", "--workers", "0"])
    assert e.value.code == 1
    assert "broken.png" in capsys.readouterr().err


def test_missing_model_or_too_many_tokens_fail_before_any_work(model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "o"
    with pytest.raises(SystemExit):
        main(["encode", "--model", str(tmp_path / "nowhere"), "--input", str(image_dir), "--output", str(out)])
    assert "nowhere" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["encode", "--model", str(model_dir), "--input", str(image_dir), "--output", str(out),
              "--num-tokens", "99"])
    assert "1..8" in capsys.readouterr().err and not out.exists()


def _write_input_shard(path: Path, start: int, n: int) -> list[str]:
    import webdataset as wds

    x = photo_batch(n, size=32, split="train", seed=start)
    keys = []
    with wds.TarWriter(str(path)) as w:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(tensor_to_uint8(x[i])).save(buf, format="PNG")
            keys.append(f"s{start + i:05d}")
            w.write({"__key__": keys[-1], "png": buf.getvalue(), "cls": str((start + i) % 7).encode()})
    return keys


def test_webdataset_input_with_a_truncated_shard_is_reported_and_the_rest_encoded(model_dir, tmp_path):
    keys = [_write_input_shard(tmp_path / f"in-{i:03d}.tar", 10 * i, 6) for i in range(3)]
    bad = tmp_path / "in-001.tar"
    bad.write_bytes(bad.read_bytes()[:2500])  # cut inside the second sample
    out = tmp_path / "out"
    s = encode_to_shards(model_dir, str(tmp_path / "in-{000..002}.tar"), out, batch_size=4, shard_size=4,
                         workers=2, progress=False)
    doc = _check_manifest_matches_files(out)
    assert [x["source"] for x in doc["skipped"]] == [str(bad)]
    assert "unreadable input shard" in doc["skipped"][0]["reason"] and "truncated" in doc["skipped"][0]["reason"]
    samples = _shard_samples(out)
    assert set(keys[0]) | set(keys[2]) <= set(samples) and len(samples) == s.encoded
    assert set(samples) - set(keys[0]) - set(keys[2]) <= set(keys[1][:1])  # what was readable before the cut
    info = json.loads(samples["s00023"]["json"])
    assert info["label"] == 23 % 7 and info["K"] == 8 and info["source"].endswith("in-002.tar#s00023")
    labels = {item["key"]: item["label"] for item in TokenDataset(out)}
    assert labels["s00003"] == 3


def test_resume_after_kill_9_encodes_every_input_exactly_once(model_dir, tmp_path):
    images = tmp_path / "many"
    _save_pngs(images, 150, 32, seed=1, nested=False)
    out = tmp_path / "out"
    args = ["encode", "--model", str(model_dir), "--input", str(images), "--output", str(out),
            "--batch-size", "2", "--shard-size", "5", "--workers", "1"]
    exe = Path(sys.executable).with_name("vistok")
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ONE_THREAD)
    manifest, deadline = out / "manifest.json", time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if manifest.is_file() and json.loads(manifest.read_text())["tasks_done"]:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(manifest.read_text())
    assert not doc["complete"] and 0 < len(doc["tasks_done"]) < 30
    for s in doc["shards"]:  # what the manifest lists is whole; anything else is not a listed shard
        assert sha256_file(out / s["name"]) == s["sha256"]
    main(args)  # the same command again finishes the job
    doc = _check_manifest_matches_files(out)
    assert doc["totals"]["inputs"] == 150 and doc["tasks_done"] == list(range(30))
    assert sorted(_shard_samples(out)) == sorted(p.stem for p in images.iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_job(rank: int, world: int, port: int, model: str, images: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        encode_to_shards(model, images, out, batch_size=4, shard_size=4, workers=0, progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_encode_disjoint_shard_ranges_and_every_input_once(model_dir, image_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # read by the spawned ranks when they import torch
    mp.spawn(_rank_job, args=(2, _free_port(), str(model_dir), str(image_dir), str(out)), nprocs=2)
    doc = _check_manifest_matches_files(out)
    assert doc["tasks_done"] == list(range(7)) and not list(out.glob("manifest.rank*"))
    assert len(_shard_samples(out)) == 24 and [s["source"] for s in doc["skipped"]] == ["sub1/broken.png"]
    # rank 0 owns tasks 0-2, rank 1 tasks 3-6: contiguous shard name ranges
    assert [s["name"][:13] for s in doc["shards"]] == [f"tokens-{t:06d}" for t in range(7)]


def test_target_psnr_writes_variable_length_sequences(model_dir, image_dir, tmp_path):
    tok = Tokenizer.from_pretrained(model_dir)
    if not hasattr(tok, "encode_adaptive"):
        pytest.skip("Tokenizer.encode_adaptive not available")
    s = encode_to_shards(tok, image_dir, tmp_path, target_psnr=12.0, batch_size=8, shard_size=30, workers=0,
                         progress=False)
    lengths = [item["length"] for item in TokenDataset(tmp_path)]
    assert len(lengths) == 24 and s.tokens == sum(lengths) and all(1 <= n <= 8 for n in lengths)


def _tiny_vq() -> Tokenizer:
    enc, dec = _vit_pair(32, 8, 64, 2, 2, 8, 4)
    return Tokenizer(enc, VQQuantizer(dim=4, codebook_size=64), dec)


@pytest.mark.parametrize("kind", ["vq", "fsq"])
def test_export_from_checkpoint_round_trips_tokens_images_and_codebook(kind, tmp_path):
    tok = _tiny_vq() if kind == "vq" else build_tokenizer("titok-tiny")
    tok.train()
    tok(photo_batch(8, split="train"))  # move the VQ EMA codebook / BatchNorm statistics off their init
    tok.eval()
    ckpt = tmp_path / "last.ckpt"
    torch.save({"vistok_config": to_config(tok),
                "state_dict": {f"tokenizer.{k}": v for k, v in tok.state_dict().items()}}, ckpt)
    main(["export", "--model", str(ckpt), "--output", str(tmp_path / "export")])
    again, from_ckpt = Tokenizer.from_pretrained(tmp_path / "export"), load_checkpoint(ckpt)
    x = photo_batch(4)
    for other in (again, from_ckpt):
        assert torch.equal(tok.encode(x), other.encode(x))
        assert torch.equal(tok.decode(tok.encode(x)), other.decode(other.encode(x)))
    codes = load_file(str(tmp_path / "export" / "codebook.safetensors"))["codes"]
    assert codes.dtype == torch.float32 and torch.equal(codes, tok.quantizer.codes().float())
    assert codes.shape[0] == tok.codebook_size
    spec = json.loads((tmp_path / "export" / "tokens.json").read_text())
    assert spec["special_tokens"] == {n: tok.codebook_size + i for i, n in enumerate(("bos", "eos", "pad", "mask"))}
    assert spec["image_size"] == 32 and spec["vocab_size"] == tok.codebook_size + 4
    assert "last.ckpt" in (tmp_path / "export" / "README.md").read_text()
