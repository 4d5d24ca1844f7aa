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
from tests.shard_files import member_count, shard_members
from vistok import Tokenizer
from vistok.cli import main
from vistok.configurable import to_config
from vistok.data.images import load_rgb, pil_to_tensor, resize_crop, tensor_to_uint8
from vistok.loading import load_tokenizer
from vistok.quantizers.vq import VQQuantizer
from vistok.shards import TokenDataset, collate_tokens, encode_to_shards, read_manifest
from vistok.shards.manifest import sha256_file
from vistok.tokenizers import build_tokenizer
from vistok.tokenizers.variants.titok import vit_pair

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
        for key, sample in shard_members(out / s["name"]).items():
            assert key not in samples, f"{key} twice"
            samples[key] = sample
    return samples


def _by_source(samples: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """source path (from each sample's json) -> (key, sample); every source once."""
    out = {}
    for key, sample in samples.items():
        source = json.loads(sample["json"])["source"]
        assert source not in out, f"{source} encoded twice"
        out[source] = (key, sample)
    return out


def _check_manifest_matches_files(out: Path) -> dict:
    doc = read_manifest(out)
    assert doc["complete"]
    for s in doc["shards"]:
        f = out / s["name"]
        assert sha256_file(f) == s["sha256"] and f.stat().st_size == s["bytes"], s["name"]
        packed = doc["job"].get("shard_format") == "packed"  # one member per shard, else two per sample
        assert member_count(f) == (1 if packed else 2 * s["samples"]), s["name"]
        assert len(shard_members(f)) == s["samples"], s["name"]
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
    by_source = _by_source(samples)
    for f in files:
        key, sample = by_source[str(f.relative_to(image_dir))]
        ids = np.load(io.BytesIO(sample["tokens.npy"]))
        assert ids.dtype == np.uint16 and ids.shape == (K,)
        info = json.loads(sample["json"])
        assert info == {"source": str(f.relative_to(image_dir)), "size": [40, 40], "K": K}
        assert "." not in key and key.endswith(f.name.replace(".", "_"))
    from_shards = torch.stack([torch.from_numpy(np.load(io.BytesIO(by_source[str(f.relative_to(image_dir))][1][
        "tokens.npy"])).astype(np.int64)) for f in files])
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
    names = {src.rsplit("#", 1)[1]: src for src in _by_source(samples)}
    assert set(keys[0]) | set(keys[2]) <= set(names) and len(samples) == s.encoded
    assert set(names) - set(keys[0]) - set(keys[2]) <= set(keys[1][:1])  # what was readable before the cut
    key, sample = _by_source(samples)[names["s00023"]]
    info = json.loads(sample["json"])
    assert info["label"] == 23 % 7 and info["K"] == 8 and info["source"].endswith("in-002.tar#s00023")
    assert key == "000002_000003_s00023"
    labels = {item["key"]: item["label"] for item in TokenDataset(out)}
    assert labels["000000_000003_s00003"] == 3


def test_resume_after_kill_9_encodes_every_input_exactly_once(model_dir, tmp_path):
    images = tmp_path / "many"
    _save_pngs(images, 150, 32, seed=1, nested=False)
    out = tmp_path / "out"
    args = ["encode", "--model", str(model_dir), "--input", str(images), "--output", str(out),
            "--batch-size", "2", "--shard-size", "5", "--workers", "1"]
    root = Path(__file__).resolve().parents[1]  # this checkout's vistok, whatever the installed one
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ONE_THREAD, cwd=root)
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
    assert sorted(_by_source(_shard_samples(out))) == sorted(p.name for p in images.iterdir())


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
    enc, dec = vit_pair(32, 8, 64, 2, 2, 8, 4)
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
    again, from_ckpt = Tokenizer.from_pretrained(tmp_path / "export"), load_tokenizer(ckpt)
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


def test_keys_are_unique_whatever_the_file_names(model_dir, tmp_path):
    """Issue 11, item 1: names that once mapped to one key (a.b.png / a_b.png, dup.png / dup.PNG, c.png /
    c.jpg / c_png.png) each get their own key; the json keeps the exact source."""
    photos = photo_batch(7, size=32, split="train")
    names = ["a.b.png", "a_b.png", "dup.png", "dup.PNG", "c.png", "c.jpg", "c_png.png"]
    (tmp_path / "in").mkdir()
    for name, x in zip(names, photos):
        Image.fromarray(tensor_to_uint8(x)).save(tmp_path / "in" / name, format="JPEG" if ".j" in name else "PNG")
    s = encode_to_shards(model_dir, tmp_path / "in", tmp_path / "out", batch_size=3, shard_size=4, workers=0,
                         progress=False)
    assert s.encoded == 7 and s.skipped == 0
    samples = _shard_samples(tmp_path / "out")  # asserts that no member appears twice
    assert len(samples) == 7 and all("." not in k for k in samples)
    assert sorted(_by_source(samples)) == sorted(names)
    items = list(TokenDataset(tmp_path / "out"))
    assert len({i["key"] for i in items}) == 7


def _flip_token_bytes(shard: Path) -> str:
    """Overwrite the first id of the first sample in a shard with 0xDDFF (56831); returns its key."""
    from vistok.shards.packed import PACK_EXT, unpack

    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith((".tokens.npy", PACK_EXT)))
        data = bytearray(shard.read_bytes())
        if member.name.endswith(PACK_EXT):  # the (n, L) array is stored raw in the .npz: find row 0's bytes
            block = unpack(tar.extractfile(member).read(), shard.name)
            row = block.tokens[0].tobytes()
            start = data.index(row, member.offset_data)
            data[start:start + 2] = b"\xff\xdd"
            shard.write_bytes(bytes(data))
            return block.keys[0]
    header = np.lib.format.read_magic(io.BytesIO(data[member.offset_data:]))
    assert header == (1, 0)
    start = member.offset_data + data[member.offset_data:].index(b"\n") + 1  # after the npy header
    data[start:start + 2] = b"\xff\xdd"
    shard.write_bytes(bytes(data))
    return member.name.split(".", 1)[0]


@pytest.mark.parametrize("fmt", ["packed", "per-sample"])
def test_damaged_shards_are_refused_named_verified_and_repaired_by_a_rerun(model_dir, image_dir, tmp_path, capsys,
                                                                           fmt):
    """Issue 11, item 2: flipped bytes, a truncated and a deleted shard (both formats)."""
    out = tmp_path / "out"
    args = dict(num_tokens=K, batch_size=5, shard_size=7, workers=0, progress=False, shard_format=fmt)
    encode_to_shards(model_dir, image_dir, out, **args)
    shards = read_manifest(out)["shards"]
    flipped, cut, gone = (out / shards[i]["name"] for i in range(3))
    key = _flip_token_bytes(flipped)
    cut.write_bytes(cut.read_bytes()[:-2000])
    gone.unlink()

    with pytest.raises(ValueError, match=f"shard {flipped}: sha256 .* differs from the manifest"):
        list(TokenDataset(out))
    ds = TokenDataset(out, on_error="skip")
    items = list(ds)
    assert len(items) == 24 - sum(s["samples"] for s in shards[:3]) and len(ds.problems) == 3
    assert all(i["tokens"].max() < 1000 for i in items)
    # Without the manifest's hashes, the id check still catches the flipped bytes, naming shard and key; a
    # packed member's zip checksum catches them first, naming shard and member.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / flipped.name).write_bytes(flipped.read_bytes())
    match = (f"shard .*{flipped.name}, sample {key}: token id 56831 outside the codebook 0..999" if fmt != "packed"
             else f"shard .*{flipped.name}, member .*pack.npz: .*Bad CRC-32")
    with pytest.raises(ValueError, match=match):
        list(TokenDataset(str(alone / flipped.name), codebook_size=1000))

    with pytest.raises(SystemExit) as e:
        main(["verify", str(out)])
    assert e.value.code == 1
    report = capsys.readouterr().out
    assert f"{gone.name}: missing" in report and f"{cut.name}: " in report and "truncated" in report
    assert f"{flipped.name}: sha256 differs" in report
    assert f"{key}: token id 56831" in report if fmt != "packed" else "Bad CRC-32" in report

    s = encode_to_shards(model_dir, image_dir, out, **args)
    assert s.repaired == 3 and s.encoded_now == sum(x["samples"] for x in shards[:3]) and s.complete
    assert "3 tasks with missing or damaged shards were re-encoded" in s.line()
    main(["verify", str(out)])
    assert capsys.readouterr().out.strip().endswith(": OK")
    _check_manifest_matches_files(out)
    assert len(list(TokenDataset(out))) == 24


def test_corrupt_payloads_and_an_incomplete_manifest_are_named(tmp_path):
    """Issue 11, items 2 and 12: pickled or garbage tokens.npy and non-UTF-8 json name shard and key."""
    import webdataset as wds

    def npy(arr) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        return buf.getvalue()

    cases = {
        "pickled": ({"tokens.npy": npy(np.array([{"a": 1}], dtype=object)), "json": b"{}"},
                    "tokens.npy is not a plain numpy"),
        "garbage": ({"tokens.npy": b"\x93NUMPY garbage", "json": b"{}"}, "tokens.npy is not a plain numpy"),
        "latin1": ({"tokens.npy": npy(np.array([1, 2], dtype=np.uint16)), "json": b"{\"source\": \"\xe9\"}"},
                   "json is not valid UTF-8 JSON"),
        "floats": ({"tokens.npy": npy(np.array([1.5])), "json": b"{}"}, "tokens.npy holds float64"),
    }
    for name, (sample, match) in cases.items():
        url = tmp_path / f"{name}.tar"
        with wds.TarWriter(str(url), encoder=False) as w:
            w.write({"__key__": f"k_{name}", **sample})
        with pytest.raises(ValueError, match=f"shard {url}, sample k_{name}: {match}"):
            list(TokenDataset(str(url)))
    doc = {"format": "vistok-token-shards/1", "complete": False, "job": {"tasks": 3}, "tasks_done": [0],
           "tokenizer": {"tokens": {"codebook_size": 10, "special_tokens": {"pad": 12}}},
           "shards": [{"name": "latin1.tar", "task": 0, "samples": 1, "bytes": 0,
                       "sha256": sha256_file(tmp_path / "latin1.tar")}]}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="incomplete"):
        TokenDataset(tmp_path)


def test_encode_lists_unreadable_folder_entries_as_skipped(model_dir, tmp_path):
    """Issue 11, item 4: a FIFO, a broken symlink and a symlink loop are inputs that were not read."""
    _save_pngs(tmp_path / "in", 3, 32, nested=False)
    os.mkfifo(tmp_path / "in" / "pipe.png")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in", target_is_directory=True)
    s = encode_to_shards(model_dir, tmp_path / "in", tmp_path / "out", batch_size=2, shard_size=2, workers=0,
                         progress=False)
    doc = read_manifest(tmp_path / "out")
    reasons = {x["source"]: x["reason"] for x in doc["skipped"]}
    assert set(reasons) == {"pipe.png", "gone.png", "loop"} and "FIFO" in reasons["pipe.png"]
    assert s.inputs == 6 and s.encoded == 3 and s.skipped == 3 and doc["totals"]["inputs"] == 6


@pytest.mark.parametrize("flag,value,match", [
    ("--target-psnr", "nan", "finite"), ("--target-psnr", "-3", "> 0"), ("--num-tokens", "0", "positive"),
    ("--batch-size", "0", "positive"), ("--shard-size", "-1", "positive"), ("--workers", "-1", ">= 0"),
    ("--batch", "8", "unrecognized arguments: --batch"),
])
def test_encode_arguments_are_validated_before_any_work(model_dir, image_dir, tmp_path, capsys, flag, value, match):
    """Issue 11, items 6 and 8: a bad value (or an abbreviated flag) fails before anything is written."""
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["encode", "--model", str(model_dir), "--input", str(image_dir), "--output", str(out), flag, value])
    assert e.value.code == 2 and match in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="target-psnr"):  # the Python API checks the same before any work
        encode_to_shards(model_dir, image_dir, out, target_psnr=float("nan"))
    with pytest.raises(ValueError, match="batch-size"):
        encode_to_shards(model_dir, image_dir, out, batch_size=0)
    assert not out.exists()
