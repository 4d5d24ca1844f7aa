"""Issue 12, section 2: what a new user hit (one test or more per item)."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import photo_batch
from vistok import Tokenizer
from vistok.cli import main
from vistok.configurable import to_config
from vistok.tokenizers import build_tokenizer

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"


def _ckpt(tok, path: Path, **extra) -> Path:
    """A checkpoint shaped like the ones `vistok fit` writes (state_dict under `tokenizer.`, vistok_config)."""
    torch.save({"vistok_config": to_config(tok), "global_step": 7, "epoch": 0,
                "state_dict": {f"tokenizer.{k}": v for k, v in tok.state_dict().items()}, **extra}, path)
    return path


# --- item 1: decode takes what encode_adaptive returns ------------------------------------------------------
def test_decode_takes_an_adaptive_encoding_and_any_sequence_of_1d_tensors():
    tok = build_tokenizer("titok-tiny").eval()
    x = photo_batch(3)
    adaptive = tok.encode_adaptive(x, target_psnr=22)
    recon = tok.decode(adaptive)
    assert recon.shape == x.shape
    assert torch.equal(recon, tok.decode(list(adaptive)))
    ids = tok.encode(x, num_tokens=4)
    expected = tok.decode(ids)
    assert torch.equal(tok.decode(tuple(ids)), expected)
    assert torch.equal(tok.decode(t for t in ids), expected)  # a generator
    assert torch.equal(tok.decode(ids.numpy()), expected)  # a numpy (B, K) array
    with pytest.raises(ValueError, match="sequence 0 must be 1-D"):
        tok.decode([ids])


# --- item 3: from_pretrained takes a .ckpt, and names `vistok export` otherwise -----------------------------
def test_from_pretrained_reads_a_fit_checkpoint_without_unpickling(tmp_path):
    tok = build_tokenizer("titok-tiny").eval()
    loaded = Tokenizer.from_pretrained(_ckpt(tok, tmp_path / "last.ckpt"))
    x = photo_batch(2)
    assert torch.equal(loaded.encode(x), tok.encode(x))
    import argparse

    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="not a readable vistok checkpoint.*argparse.Namespace.*vistok export"):
        Tokenizer.from_pretrained(tmp_path / "pickled.ckpt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="not a vistok export directory.*vistok export --model"):
        Tokenizer.from_pretrained(tmp_path / "folder")


# --- item 4: --version, a lazy top level, parse errors first ------------------------------------------------
def test_version_and_a_help_that_imports_no_torch():
    code = ("import sys; from vistok.cli import main; main(['--help']); main(['--version']); "
            "print(sorted(m for m in ('torch', 'lightning', 'diffusers', 'wandb') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import vistok

    assert f"vistok {vistok.__version__}" in r.stdout and r.stdout.strip().endswith("[]")


@pytest.mark.parametrize("module", ["vistok", "vistok.data"])
def test_importing_vistok_or_its_data_pulls_no_lightning_diffusers_or_wandb(module):
    code = (f"import sys; import {module}; "
            "print(sorted(m for m in ('lightning', 'diffusers', 'wandb', 'torchmetrics') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_a_misspelt_config_key_prints_the_error_first_not_the_usage_block(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(DEMO), "--trainer.max_stepz", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert err[0].startswith("vistok fit: error: unrecognized arguments: --trainer.max_stepz"), err
    assert len(err) == 2 and "--help" in err[1], err


# --- item 5: known noise silenced by the CLI ----------------------------------------------------------------
def test_the_cli_silences_the_leafspec_warning_and_the_litlogger_tip():
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from vistok.quiet import silence_known_noise

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    parent = logging.getLogger("lightning.pytorch")
    parent.addHandler(handler)
    level = parent.level
    parent.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_known_noise()
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
                          "and treespec.is_leaf()` instead.", FutureWarning, stacklevel=1)
            warnings.warn("a warning of the user's own", UserWarning, stacklevel=1)
            rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                           "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger")
            rank_zero_info("GPU available: False")
    finally:
        parent.removeHandler(handler)
        parent.setLevel(level)
    assert [str(w.message) for w in caught] == ["a warning of the user's own"]
    assert seen == ["GPU available: False"]


# --- item 7: one loader for the Python API, and a warning for [0, 1] pixels ---------------------------------
def test_load_images_prepares_files_pil_and_uint8_arrays_as_the_cli_does(tmp_path):
    from vistok import load_images
    from vistok.data.images import load_rgb, pil_to_tensor, resize_crop

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    gray = rng.integers(0, 256, (50, 30), dtype=np.uint8)
    x = load_images([tmp_path / "a.png", str(tmp_path / "a.png"), Image.fromarray(rgb), rgb, gray], 32)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    cli = pil_to_tensor(resize_crop(load_rgb(tmp_path / "a.png"), 32))
    for i in range(4):
        assert torch.equal(x[i], cli)
    assert load_images(rgb, 16).shape == (1, 3, 16, 16)  # one item
    with pytest.raises(ValueError, match="uint8"):
        load_images([rgb.astype(np.float32) / 255], 32)
    with pytest.raises(OSError, match="missing.png"):
        load_images([tmp_path / "missing.png"], 32)
    tok = build_tokenizer("titok-tiny").eval()
    assert tok.encode(load_images([rgb], tok.image_size)).shape == (1, tok.max_tokens)


def test_a_batch_in_zero_one_warns_once_with_the_fix(monkeypatch):
    import vistok.tokenizers.tokenizer as module

    monkeypatch.setattr(module, "_ZERO_ONE_WARNED", False)
    tok = build_tokenizer("titok-tiny").eval()
    x = photo_batch(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.encode(x)  # [-1, 1]: no warning
        assert not caught
        tok.encode((x + 1) / 2)
        tok.encode((x + 1) / 2)
        tok.encode_adaptive((x + 1) / 2, target_psnr=20)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "[0, 1]" in messages[0] and "x * 2 - 1" in messages[0], messages


# --- item 6: eval shows its rFID work, warns on few images, and picks the device like every command ---------
def test_eval_shows_rfid_progress_warns_on_few_images_and_defaults_to_auto_device(tmp_path, capsys):
    from tests.test_metrics import TinyInception
    from vistok.evaluate import EvalSettings

    inception = tmp_path / "tiny_inception.pt"
    torch.jit.script(TinyInception().eval()).save(str(inception))
    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "model")
    main(["eval", "--model", str(model), "--limit", "6", "--batch-size", "4", "--num-tokens", "1,8",
          "--baselines", "none", "--inception", str(inception), "--output", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert "rFID features" in err and "Frechet distance" in err, err[-2000:]
    assert "warning: rFID on 6 images (fewer than 1000)" in err
    result = __import__("json").loads((tmp_path / "eval" / "metrics.json").read_text())
    assert any("fewer than 1000" in note for note in result["notes"])
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert EvalSettings(model="m").device == "auto"


@pytest.mark.parametrize("command", ["eval", "encode", "ladder", "decode", "reconstruct"])
def test_every_command_defaults_to_the_auto_device(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--device DEVICE" in out and "default auto: cuda when available" in out, out


def test_resolve_device():
    from vistok.devices import resolve_device

    assert resolve_device("auto") == resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# --- item 2: tokens back to images ---------------------------------------------------------------------------
def _image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def test_decode_writes_a_png_per_shard_sample_named_by_its_key(tmp_path, capsys):
    from vistok.data.images import tensor_to_uint8
    from vistok.shards import TokenDataset, encode_to_shards

    tok = build_tokenizer("titok-tiny").eval()
    model = tok.save_pretrained(tmp_path / "model")
    encode_to_shards(model, str(_image_folder(tmp_path / "images")), tmp_path / "shards", workers=0,
                     progress=False)
    main(["decode", "--model", str(model), "--input", str(tmp_path / "shards"), "--output", str(tmp_path / "out"),
          "--num-tokens", "4", "--batch-size", "4"])
    assert "decoded 6 samples" in capsys.readouterr().out
    samples = list(TokenDataset(tmp_path / "shards"))
    pngs = _pngs(tmp_path / "out")
    assert sorted(pngs) == sorted(f"{s['key']}.png" for s in samples)
    for s in samples:
        want = tensor_to_uint8(tok.decode([s["tokens"][:4]])[0])
        assert np.array_equal(pngs[f"{s['key']}.png"], want)
    # an existing output is not overwritten silently
    with pytest.raises(SystemExit) as e:
        main(["decode", "--model", str(model), "--input", str(tmp_path / "shards"), "--output",
              str(tmp_path / "out")])
    assert e.value.code == 1 and "--overwrite" in capsys.readouterr().err


def test_decode_reads_a_npy_of_one_or_many_sequences_and_refuses_ids_outside_the_codebook(tmp_path, capsys):
    tok = build_tokenizer("titok-tiny").eval()
    model = tok.save_pretrained(tmp_path / "model")
    ids = tok.encode(photo_batch(2)).numpy()
    np.save(tmp_path / "batch.npy", ids.astype(np.uint16))
    np.save(tmp_path / "one.npy", ids[0, :3])
    main(["decode", "--model", str(model), "--input", str(tmp_path / "batch.npy"), str(tmp_path / "one.npy"),
          "--output", str(tmp_path / "out"), "--steps", "2", "--seed", "1"])
    assert sorted(_pngs(tmp_path / "out")) == ["batch_000000.png", "batch_000001.png", "one.png"]
    np.save(tmp_path / "bad.npy", np.array([0, tok.codebook_size]))
    with pytest.raises(SystemExit) as e:
        main(["decode", "--model", str(model), "--input", str(tmp_path / "bad.npy"), "--output",
              str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 1 and err.startswith("vistok decode: error: sample bad:") and "999" in err, err


def test_reconstruct_writes_pngs_mirroring_the_folder_and_prints_mean_psnr(tmp_path, capsys):
    from vistok import load_images
    from vistok.metrics.psnr import per_image_psnr

    tok = build_tokenizer("titok-tiny").eval()
    model = tok.save_pretrained(tmp_path / "model")
    images = _image_folder(tmp_path / "images")
    main(["reconstruct", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "out"),
          "--num-tokens", "8"])
    out = capsys.readouterr().out
    assert sorted(_pngs(tmp_path / "out")) == [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    x = load_images(sorted(images.rglob("*.png")), tok.image_size)
    psnr = float(per_image_psnr(tok.decode(tok.encode(x, num_tokens=8)), x).mean())
    assert "reconstructed 6 images at K=8 tokens" in out and f"mean PSNR {psnr:.2f} dB" in out, out


# --- item 8: labels from class folders, flip / ten-crop views ------------------------------------------------
def test_encode_labels_from_class_folders_with_a_labels_json(tmp_path, capsys):
    import json

    from vistok.shards import TokenDataset

    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "model")
    images = _image_folder(tmp_path / "cls", classes=("dog", "cat", "zebra"), per_class=2)
    args = ["encode", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "shards"),
            "--workers", "0", "--labels-from-folders"]
    main(args)
    mapping = {"cat": 0, "dog": 1, "zebra": 2}
    assert json.loads((tmp_path / "shards" / "labels.json").read_text()) == mapping
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["job"]["labels"] == mapping
    samples = list(TokenDataset(tmp_path / "shards"))
    assert len(samples) == 6
    for s in samples:  # keys end with the file's tail: <class>_<i>_png
        assert s["label"] == mapping[s["key"].split("_")[2]], s["key"]
    capsys.readouterr()
    main(args)  # a rerun of the same job resumes (nothing to do)
    assert "0 encoded in this run" in capsys.readouterr().out
    (images / "loose.png").write_bytes((images / "cat" / "0.png").read_bytes())
    with pytest.raises(SystemExit) as e:
        main([*args[:6], str(tmp_path / "other"), *args[7:]])
    assert e.value.code == 1 and "outside any class folder" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    with pytest.raises(SystemExit):  # no labels by default: a folder has none
        main(["encode", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "plain"),
              "--workers", "0", "--augment", "sideways"])
    main(["encode", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "plain"),
          "--workers", "0"])
    assert {s["label"] for s in TokenDataset(tmp_path / "plain")} == {-1}


@pytest.mark.parametrize(("augment", "views"), [
    ("flip", ["center", "flip"]),
    ("tencrop", [f"{p}{f}" for p in ("tl", "tr", "bl", "br", "center") for f in ("", "_flip")]),
])
def test_encode_augmented_views_get_unique_keys_and_say_which_view(tmp_path, augment, views):
    import json

    from tests.shard_files import shard_members
    from vistok.data.images import augmented_views, load_rgb, resize_crop
    from vistok.shards import encode_to_shards

    tok = build_tokenizer("titok-tiny").eval()
    images = _image_folder(tmp_path / "images", classes=("a",), per_class=2)
    encode_to_shards(tok, str(images), tmp_path / "shards", workers=0, progress=False, augment=augment,
                     shard_size=1)
    infos = {}
    for shard in sorted((tmp_path / "shards").glob("*.tar")):
        for key, sample in shard_members(shard).items():
            infos[key] = json.loads(sample["json"])
    assert len(infos) == 2 * len(views)
    for key, info in infos.items():
        assert key.endswith("_" + info["view"]) and info["source"] in ("a/0.png", "a/1.png")
    assert sorted(i["view"] for i in infos.values() if i["source"] == "a/0.png") == sorted(views)
    img = load_rgb(images / "a" / "0.png")
    got = dict(augmented_views(img, 32, augment))
    assert list(got) == views
    centre = resize_crop(img, 32)
    if augment == "flip":
        assert got["center"].tobytes() == centre.tobytes()
        assert np.array_equal(np.asarray(got["flip"]), np.asarray(centre)[:, ::-1])
    else:
        assert np.array_equal(np.asarray(got["tl_flip"]), np.asarray(got["tl"])[:, ::-1])
        assert len({v.tobytes() for v in got.values()}) == 10


# --- item 9: no silent overwrite, readable exports, a model card that says what trained it -----------------
def test_ladder_needs_an_output_and_never_overwrites_silently(tmp_path, capsys):
    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "model")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        main(["ladder", "--model", str(model), "--input", str(tmp_path / "a.png")])
    assert e.value.code == 2 and "--output" in capsys.readouterr().err
    out = tmp_path / "ladder.png"
    out.write_bytes(b"precious")
    with pytest.raises(SystemExit) as e:
        main(["ladder", "--model", str(model), "--input", str(tmp_path / "a.png"), "--output", str(out)])
    assert e.value.code == 1 and "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    main(["ladder", "--model", str(model), "--input", str(tmp_path / "a.png"), "--output", str(out), "--overwrite"])
    assert Image.open(out).format == "PNG"


def test_export_files_are_world_readable_and_the_card_records_the_training(tmp_path, monkeypatch):
    import os

    import vistok
    from vistok.saving import export_checkpoint

    run = tmp_path / "runs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("trainer: {max_steps: 7}\ndata:\n  train: /data/photos\n  val: sample\n"
                                     "  image_size: 32\n")
    tok = build_tokenizer("titok-tiny")
    ckpt = _ckpt(tok, run / "checkpoints" / "last.ckpt")
    old = os.umask(0o022)
    try:
        out = export_checkpoint(ckpt, tmp_path / "export")
    finally:
        os.umask(old)
    for f in out.iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f
    card = (out / "README.md").read_text()
    for text in ("optimizer steps: 7", "training data: /data/photos", "validation data: sample",
                 f"vistok version: {vistok.__version__}", "vistok eval"):
        assert text in card, card
    plain = tok.save_pretrained(tmp_path / "plain")
    assert "not recorded" in (plain / "README.md").read_text()
