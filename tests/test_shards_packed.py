"""Packed token shards and the flat memmap export (issue 25, item 3): the byte budget, the same samples and
checks as per-sample shards (rank/worker split, shuffle, ids outside the codebook named by shard and key),
resume of an old per-sample job, and `vistok shards to-memmap` (complete, resumable, checked)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import photo_batch
from vistok.cli import main
from vistok.data.images import tensor_to_uint8
from vistok.shards import TokenDataset, encode_to_shards, read_manifest
from vistok.shards.manifest import sha256_file
from vistok.shards.packed import PACK_EXT, pack
from vistok.shards.writer import TaskWriter
from vistok.tokenizers import build_tokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i, x in enumerate(photo_batch(20, size=32, split="train", seed=5)):
        sub = root / f"class{i % 2}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(tensor_to_uint8(x)).save(sub / f"img{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def packed(model_dir, images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed")
    s = encode_to_shards(model_dir, images, out, batch_size=8, shard_size=6, workers=0, progress=False,
                         labels_from_folders=True)
    assert s.complete and s.encoded == 20 and s.shards == 4
    return out


@pytest.mark.parametrize("length,budget", [(64, 2.0), (1024, 1.1)])
def test_packed_shards_cost_about_their_token_bytes_records_included(tmp_path, length, budget):
    """ImageNet-like records (source path, size, label) with uniform ids of a 4,096-code book."""
    rng = np.random.default_rng(0)
    w = TaskWriter(tmp_path, 0, 1000, np.dtype(np.uint16), "packed")
    for i in range(1000):
        c = int(rng.integers(1000))
        w.write(f"000000_{i:06d}_n{c:08d}_{i}_JPEG", torch.from_numpy(rng.integers(0, 4096, length)),
                {"source": f"train/n{c:08d}/n{c:08d}_{i}.JPEG", "size": [500, 375], "label": c})
    w.finish()
    (entry,) = w.shards
    assert entry["samples"] == 1000 and entry["tokens"] == 1000 * length
    ratio = entry["bytes"] / (1000 * length * 2)
    assert ratio <= budget, ratio
    samples = list(TokenDataset(str(tmp_path / entry["name"]), codebook_size=4096))
    assert len(samples) == 1000 and samples[7]["info"]["source"].endswith("_7.JPEG")
    assert samples[7]["label"] == samples[7]["info"]["label"]


def test_packed_shards_hold_one_member_and_every_sample_reads_back(packed, images):
    doc = read_manifest(packed)
    assert doc["job"]["shard_format"] == "packed"
    for s in doc["shards"]:
        with tarfile.open(packed / s["name"]) as tar:
            assert tar.getnames() == [s["name"].removesuffix(".tar") + "." + PACK_EXT]
    samples = list(TokenDataset(packed))
    assert len(samples) == 20 and len({s["key"] for s in samples}) == 20
    assert {s["info"]["source"] for s in samples} == {str(p.relative_to(images)) for p in images.rglob("*.png")}
    for s in samples:
        assert s["label"] == int(s["info"]["source"][5]) and s["shape"] == (8,) and s["tokens"].dtype == torch.int64


def test_rank_and_worker_split_and_shuffle_cover_every_sample_once(packed, monkeypatch):
    every = sorted(s["key"] for s in TokenDataset(packed))
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = TokenDataset(packed, shuffle=50)
        keys = [s["key"] for s in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
        assert 0 < len(keys) < 20
        seen += keys
    assert sorted(seen) == every
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    shuffled = [s["key"] for s in TokenDataset(packed, shuffle=50)]
    assert sorted(shuffled) == every and shuffled != sorted(every)


def test_ids_outside_the_codebook_are_refused_naming_shard_and_key(tmp_path):
    import webdataset as wds

    arrays = [np.array([1, 2, 3], np.uint16), np.array([4, 1000, 5], np.uint16), np.array([6], np.uint16)]
    keys = ["good_a", "bad_b", "good_c"]
    infos = [{"source": k, "K": a.size} for k, a in zip(keys, arrays)]
    url = tmp_path / "hand.tar"
    with wds.TarWriter(str(url), encoder=False) as w:
        w.write({"__key__": "hand", PACK_EXT: pack(keys, arrays, infos, np.dtype(np.uint16))})
    with pytest.raises(ValueError, match=r"hand.tar, sample bad_b: token id 1000 outside the codebook 0..999 "
                                         r"\(1 of 3 ids\)"):
        list(TokenDataset(str(url), codebook_size=1000))
    ds = TokenDataset(str(url), codebook_size=1000, on_error="skip")
    got = list(ds)
    assert [s["key"] for s in got] == ["good_a", "good_c"] and len(ds.problems) == 1
    assert got[1]["tokens"].tolist() == [6] and got[1]["length"] == 1  # a short row: its padding is not an id
    with wds.TarWriter(str(tmp_path / "garbage.tar"), encoder=False) as w:
        w.write({"__key__": "g", PACK_EXT: b"PK\x03\x04 not a zip"})
    with pytest.raises(ValueError, match=r"garbage.tar, member g.pack.npz: pack.npz is not a plain numpy .npz"):
        list(TokenDataset(str(tmp_path / "garbage.tar")))


def test_an_old_per_sample_job_resumes_only_with_its_format(model_dir, images, tmp_path, capsys):
    out = tmp_path / "old"
    args = ["encode", "--model", str(model_dir), "--input", str(images), "--output", str(out), "--workers", "0",
            "--shard-size", "8"]
    main([*args, "--format", "per-sample"])
    assert "shard_format" not in read_manifest(out)["job"]  # manifests written before packing look the same
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 1 and "pass --format per-sample to resume it" in capsys.readouterr().err
    main([*args, "--format", "per-sample"])
    assert "0 encoded in this run" in capsys.readouterr().out


# --- vistok shards to-memmap ----------------------------------------------------------------------------------
def test_to_memmap_writes_every_sample_in_manifest_order(packed, tmp_path, capsys):
    from vistok.shards.memmap import MemmapTokens

    out = tmp_path / "flat"
    main(["shards", "to-memmap", str(packed), str(out), "--quiet"])
    assert "20 samples, 160 tokens (uint16)" in capsys.readouterr().out
    m = MemmapTokens(out)
    samples = list(TokenDataset(packed))  # manifest order, shard by shard
    assert len(m) == 20 and m.tokens.dtype == np.uint16 and len(m.tokens) == 160
    rows = list(m.rows())
    for i, s in enumerate(samples):
        assert np.array_equal(m[i], s["tokens"].numpy()) and m.labels[i] == s["label"]
        assert rows[i]["key"] == s["key"] and rows[i]["source"] == s["info"]["source"] and rows[i]["length"] == 8
    flat = np.memmap(out / "tokens.bin", dtype=np.uint16, mode="r")  # as nanoGPT reads train.bin
    assert np.array_equal(flat, torch.cat([s["tokens"] for s in samples]).numpy())
    state = json.loads((out / "memmap.json").read_text())
    assert state["complete"] and state["files"]["tokens.bin"]["sha256"] == sha256_file(out / "tokens.bin")
    assert sorted(p.name for p in out.iterdir()) == ["labels.npy", "memmap.json", "offsets.npy", "samples.jsonl",
                                                     "tokens.bin"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    main(["shards", "to-memmap", str(packed), str(out), "--quiet"])  # a rerun checks, rewrites nothing
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    data = bytearray((out / "tokens.bin").read_bytes())
    data[0] ^= 0xFF
    (out / "tokens.bin").write_bytes(bytes(data))
    with pytest.raises(SystemExit) as e:
        main(["shards", "to-memmap", str(packed), str(out), "--quiet"])
    assert e.value.code == 1 and "tokens.bin: size or sha256 differs" in capsys.readouterr().err


def test_to_memmap_resumes_after_an_interruption_and_refuses_other_shards(packed, tmp_path, monkeypatch):
    from vistok.shards import dataset, memmap

    out = tmp_path / "flat"
    real = dataset.TokenDataset._shard
    calls = []

    def interrupted(self, url):
        calls.append(url)
        if len(calls) == 3:
            yield from list(real(self, url))[:2]  # two samples of the third shard appended, then killed
            raise KeyboardInterrupt
        yield from real(self, url)

    monkeypatch.setattr(dataset.TokenDataset, "_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        memmap.shards_to_memmap(packed, out, progress=False)
    monkeypatch.setattr(dataset.TokenDataset, "_shard", real)
    state = json.loads((out / "memmap.json").read_text())
    assert not state["complete"] and state["done"] == 2 and state["samples"] == 12
    assert (out / "tokens.bin").stat().st_size > state["sizes"]["tokens.bin"]  # the cut shard's tail
    doc = memmap.shards_to_memmap(packed, out, progress=False)
    assert doc["complete"] and doc["samples"] == 20
    m = memmap.MemmapTokens(out)
    want = torch.cat([s["tokens"] for s in TokenDataset(packed)]).numpy()
    assert np.array_equal(np.asarray(m.tokens), want) and len(list(m.rows())) == 20

    other = tmp_path / "other"  # the same samples, other shards: the export is not mixed with them
    for f in packed.iterdir():
        (other / f.name).parent.mkdir(exist_ok=True)
        (other / f.name).write_bytes(f.read_bytes())
    (other / "manifest.json").write_text((other / "manifest.json").read_text() + "\n")
    with pytest.raises(ValueError, match="exported from other shards"):
        memmap.shards_to_memmap(other, out, progress=False)


def test_to_memmap_refuses_an_incomplete_job_and_damaged_shards(packed, tmp_path):
    from vistok.shards.memmap import shards_to_memmap

    copy = tmp_path / "copy"
    copy.mkdir()
    for f in packed.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    name = read_manifest(copy)["shards"][1]["name"]
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"shard .*{name}: sha256 .* differs from the manifest"):
        shards_to_memmap(copy, tmp_path / "flat", progress=False)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["complete"] = False
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="incomplete"):
        shards_to_memmap(copy, tmp_path / "flat2", progress=False)


def test_decode_reads_packed_shards_like_per_sample_ones(packed, model_dir, tmp_path, capsys):
    main(["decode", "--model", str(model_dir), "--input", str(packed), "--output", str(tmp_path / "png")])
    assert "decoded 20 samples" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png")) == sorted(
        f"{s['key']}.png" for s in TokenDataset(packed))


def test_a_packed_member_whose_records_inflate_without_bound_is_refused(tmp_path):
    import zlib

    import webdataset as wds

    from vistok.shards.packed import META_BYTES_PER_SAMPLE

    buf = io.BytesIO()
    bomb = zlib.compress(b" " * (3 * META_BYTES_PER_SAMPLE), 9)  # ~600 bytes that inflate to 192 KB for 2 samples
    np.savez(buf, tokens=np.ones((2, 3), np.uint16), lengths=np.array([3, 3], np.int32),
             labels=np.array([-1, -1]), meta=np.frombuffer(bomb, np.uint8))
    with wds.TarWriter(str(tmp_path / "bomb.tar"), encoder=False) as w:
        w.write({"__key__": "b", PACK_EXT: buf.getvalue()})
    with pytest.raises(ValueError, match="bomb.tar, member b.pack.npz: pack.npz meta inflates to more than"):
        list(TokenDataset(str(tmp_path / "bomb.tar")))
