"""Token shards against a hostile user (issue 26, items 3, 5, 6 and 9): keys that try to leave `--output`, two
encodes into one directory, verify on video-grid shards, damaged or hand-edited manifests. Each case reproduces
what the tester did; tiny untrained models, a few real photo crops."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
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
from vistok.tokenizers import build_tokenizer

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pngs(root: Path, n: int, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(photo_batch(n, size=32, split="train", seed=seed)):
        Image.fromarray(tensor_to_uint8(x)).save(root / f"img{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return _pngs(tmp_path_factory.mktemp("images"), 9)


def _encode(model_dir: Path, images: Path, out: Path, fmt: str) -> Path:
    s = encode_to_shards(model_dir, images, out, num_tokens=4, batch_size=4, shard_size=3, workers=0,
                         progress=False, shard_format=fmt)
    assert s.complete and s.encoded == 9
    return out


def _rewrite_manifest(out: Path, edit) -> None:
    path = out / "manifest.json"
    doc = json.loads(path.read_text())
    doc = edit(doc)
    path.write_text(json.dumps(doc))


def _fail(argv: list[str], capsys) -> str:
    """Run a command that must fail as a user error: rc 1 and one line on stderr, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    captured = capsys.readouterr()
    assert e.value.code == 1, captured
    return captured.out + captured.err


# --- item 3: keys that would leave --output -----------------------------------------------------------------
def _hostile_shard(out: Path, bad_key: str) -> None:
    """Rename the first sample of the first (per-sample) shard to `bad_key`, keeping the manifest's hash right."""
    entry = read_manifest(out)["shards"][0]
    shard = out / entry["name"]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first = members[0][0].name.split(".", 1)[0]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m, data in members:
            key, ext = m.name.split(".", 1)
            info = tarfile.TarInfo(f"{bad_key}.{ext}" if key == first else m.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())

    def fix(doc):
        for s in doc["shards"]:
            if s["name"] == entry["name"]:
                s["sha256"], s["bytes"] = sha256_file(shard), shard.stat().st_size
        return doc

    _rewrite_manifest(out, fix)


@pytest.mark.parametrize("bad_key", ["../../escaped", "ABSOLUTE/escaped_abs", "a/../../escaped_mid"])
def test_decode_never_writes_outside_output_and_verify_names_the_key(model_dir, images, tmp_path, capsys, bad_key):
    work = tmp_path / "work"
    out = _encode(model_dir, images, work / "shards", "per-sample")
    if bad_key.startswith("ABSOLUTE"):
        bad_key = str(tmp_path / "abs" / "escaped_abs")
    _hostile_shard(out, bad_key)
    report = _fail(["verify", str(out)], capsys)
    assert "not a safe relative name" in report and bad_key in report
    err = _fail(["decode", "--model", str(model_dir), "--input", str(out), "--output", str(work / "pngs")], capsys)
    assert "not a safe relative name" in err
    escaped = [p for p in tmp_path.rglob("escaped*") if p.is_file()]
    assert escaped == [], escaped
    # keys with subfolders inside --output stay allowed: `train/cat/x` -> pngs/train/cat/x.png
    from vistok.shards.names import key_path

    assert key_path("train/cat/x", ".png") == Path("train/cat/x.png")
    for bad in ("", ".", "a/./b", "a//b", "C:\\x", "a\\b", "a\0b", "..", "/x"):
        with pytest.raises(ValueError, match="not a safe relative name"):
            key_path(bad, ".png")


def test_manifest_shard_names_cannot_point_outside_the_directory(model_dir, images, tmp_path, capsys):
    out = _encode(model_dir, images, tmp_path / "shards", "per-sample")
    outside = tmp_path / "outside.tar"
    outside.write_bytes((out / read_manifest(out)["shards"][0]["name"]).read_bytes())

    def point_outside(doc):
        doc["shards"][0]["name"] = "../outside.tar"
        return doc

    _rewrite_manifest(out, point_outside)
    for argv in (["verify", str(out)],
                 ["decode", "--model", str(model_dir), "--input", str(out), "--output", str(tmp_path / "p")]):
        assert "'../outside.tar'" in _fail(argv, capsys)
    with pytest.raises(ValueError, match="plain file name"):
        TokenDataset(out)


# --- item 5: two encodes into one directory ---------------------------------------------------------------
def test_a_second_encode_into_a_busy_directory_is_refused_naming_the_holder(model_dir, tmp_path, capsys):
    many = _pngs(tmp_path / "many", 60, seed=3)
    out = tmp_path / "out"
    args = ["encode", "--model", str(model_dir), "--input", str(many), "--output", str(out), "--batch-size", "2",
            "--shard-size", "3", "--workers", "0", "--num-tokens", "4"]
    root = Path(__file__).resolve().parents[1]  # this checkout's vistok, whatever the installed one
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ONE_THREAD, cwd=root)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (out / "manifest.json").is_file():
            time.sleep(0.02)
        assert proc.poll() is None, "the first job ended before the second started"
        err = _fail(args, capsys)
        assert f"pid {proc.pid}" in err and os.uname().nodename in err and "in use" in err
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    main(["verify", str(out)])
    assert capsys.readouterr().out.strip().endswith(": OK")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("tokens-")) == ["manifest.json"]
    assert len(list(TokenDataset(out))) == 60


def test_a_lock_left_by_a_killed_job_does_not_block_the_rerun(model_dir, images, tmp_path):
    from vistok.shards.lock import LOCK_NAME

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))  # no process holds it
    _encode(model_dir, images, out, "packed")
    assert not (out / LOCK_NAME).exists()


# --- item 6: verify on video-grid shards ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["per-sample", "packed"])
def test_verify_accepts_intact_video_grid_shards_and_refuses_a_wrong_width(tmp_path, capsys, fmt):
    from vistok.data.images import load_rgb
    from vistok.data.sample import photo_dir
    from vistok.data.sample_clips import render_move
    from vistok.data.video_io import write_video

    torch.manual_seed(0)
    model = build_tokenizer("omni-tiny").eval().save_pretrained(tmp_path / "omni")
    clips = tmp_path / "clips"
    photo = load_rgb(photo_dir() / "chelsea.png")
    write_video(clips / "pan.mp4", render_move(photo, "pan", random.Random(1), 6, 32), fps=8)
    photo.resize((32, 32)).save(clips / "still.png")
    out = tmp_path / "shards"
    main(["encode", "--model", str(model), "--input", str(clips), "--output", str(out), "--workers", "0",
          "--format", fmt])
    capsys.readouterr()
    main(["verify", str(out)])
    assert capsys.readouterr().out.strip().endswith(": OK")
    shapes = sorted(s["shape"] for s in TokenDataset(out))
    assert shapes == [(1, 16), (2, 16)]


# --- item 9: manifest problems ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["per-sample", "packed"])
def test_a_shard_removed_from_the_manifest_is_refused_not_silently_dropped(model_dir, images, tmp_path, capsys,
                                                                           fmt):
    out = _encode(model_dir, images, tmp_path / "shards", fmt)
    _rewrite_manifest(out, lambda doc: {**doc, "shards": doc["shards"][1:]})
    with pytest.raises(ValueError, match="totals.encoded is 9.*list 6"):
        TokenDataset(out)
    err = _fail(["decode", "--model", str(model_dir), "--input", str(out), "--output", str(tmp_path / "p")], capsys)
    assert "manifest.json" in err and "6" in err and "9" in err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    report = _fail(["verify", str(out)], capsys)
    assert "not listed in manifest.json" in report and "totals.encoded is 9" in report
    s = encode_to_shards(model_dir, images, out, num_tokens=4, batch_size=4, shard_size=3, workers=0,
                         progress=False, shard_format=fmt)  # a rerun re-encodes the task whose shard was dropped
    assert s.repaired == 1 and s.encoded_now == 3 and s.encoded == 9
    assert len(list(TokenDataset(out))) == 9
    main(["verify", str(out)])
    assert capsys.readouterr().out.strip().endswith(": OK")


@pytest.mark.parametrize("edit,match", [
    (lambda doc: [doc], "not a JSON object"),
    (lambda doc: {**doc, "shards": [1]}, r"shards\[0\] is 1, expected an object"),
    (lambda doc: {**doc, "shards": [{k: v for k, v in s.items() if k != "name"} for s in doc["shards"]]},
     r"shards\[0\] has no 'name'"),
    (lambda doc: {**doc, "shards": {"a": 1}}, "'shards' is a dict, expected a list"),
    (lambda doc: {**doc, "shards": [{**s, "samples": "3"} for s in doc["shards"]]},
     r"shards\[0\]\['samples'\] is '3', expected an integer"),
    (lambda doc: {k: v for k, v in doc.items() if k != "tokenizer"}, "no 'tokenizer'"),
    (lambda doc: {**doc, "tokenizer": {**doc["tokenizer"], "tokens": {}}}, "codebook_size"),
])
def test_malformed_manifests_get_one_clear_error_everywhere(model_dir, images, tmp_path, capsys, edit, match):
    out = _encode(model_dir, images, tmp_path / "shards", "packed")
    _rewrite_manifest(out, edit)
    for argv in (["verify", str(out)],
                 ["decode", "--model", str(model_dir), "--input", str(out), "--output", str(tmp_path / "p")]):
        err = _fail(argv, capsys)
        assert "manifest.json" in err and "Traceback" not in err
        assert __import__("re").search(match, err), err
    with pytest.raises(ValueError, match=match):
        TokenDataset(out)
    with pytest.raises(ValueError, match=match):  # a rerun of the job says the same, before any work
        _encode(model_dir, images, out, "packed")


def test_both_formats_read_back_the_same_samples(model_dir, images, tmp_path):
    """Both formats hold the same samples (keys, ids, shapes, labels, records)."""
    a = _encode(model_dir, images, tmp_path / "a", "per-sample")
    b = _encode(model_dir, images, tmp_path / "b", "packed")
    ra = {s["key"]: s for s in TokenDataset(a)}
    rb = {s["key"]: s for s in TokenDataset(b)}
    assert sorted(ra) == sorted(rb) and len(ra) == 9
    for k in ra:
        assert torch.equal(ra[k]["tokens"], rb[k]["tokens"]) and ra[k]["info"] == rb[k]["info"]
        assert (ra[k]["shape"], ra[k]["label"], ra[k]["length"]) == (rb[k]["shape"], rb[k]["label"], rb[k]["length"])
    assert np.all([s["tokens"].dtype == torch.int64 for s in rb.values()])
