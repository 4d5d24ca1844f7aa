"""Issue 11, items 8 and 11: every vistok parser refuses abbreviations; a user error is one line on stderr
and exit status 1 (the traceback only with --debug)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_configs import _tiny_overrides
from vistok.cli import main
from vistok.tokenizers import build_tokenizer

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"


def _one_line_error(capsys, args: list[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"vistok {args[0]}: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_an_abbreviated_option_fails_like_a_misspelt_key(tmp_path, capsys):
    from vistok.trainers.cli import cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", str(DEMO), "--trainer.max_step", "2", "--print_config"])
    assert e.value.code == 2 and "--trainer.max_step" in capsys.readouterr().err
    for command in (["export", "--model", "m.ckpt", "--output", str(tmp_path), "--over"],
                    ["eval", "--model", "m", "--output", str(tmp_path), "--batch", "4"],
                    ["ladder", "--model", "m", "--input", "a.png", "--output", "l.png", "--dev", "cpu"],
                    ["verify", str(tmp_path), "--h"]):
        with pytest.raises(SystemExit) as e:
            main(command)
        assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    tok = build_tokenizer("titok-tiny")
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, pickled)  # weights_only refuses this
    _one_line_error(capsys, ["export", "--model", str(pickled), "--output", str(tmp_path / "e")],
                    "pickled.ckpt", "not a readable vistok checkpoint")
    _one_line_error(capsys, ["export", "--model", str(tmp_path / "none.ckpt"), "--output", str(tmp_path / "e")],
                    "none.ckpt not found")
    export = tok.save_pretrained(tmp_path / "export")
    _one_line_error(capsys, ["export", "--model", str(export), "--output", str(tmp_path / "e")],
                    "already an export directory")
    ckpt = tmp_path / "ok.ckpt"
    from vistok.configurable import to_config

    torch.save({"vistok_config": to_config(tok),
                "state_dict": {f"tokenizer.{k}": v for k, v in tok.state_dict().items()}}, ckpt)
    _one_line_error(capsys, ["export", "--model", str(ckpt), "--output", str(export)], "--overwrite")
    main(["export", "--model", str(ckpt), "--output", str(export), "--overwrite"])
    assert "exported" in capsys.readouterr().out
    ladder = ["--output", str(tmp_path / "ladder.png")]
    _one_line_error(capsys, ["ladder", "--model", str(export), "--input", str(tmp_path / "no.png"), *ladder], "no.png")
    _one_line_error(capsys, ["ladder", "--model", str(tmp_path / "nothing"), "--input", "a.png", *ladder], "nothing")
    (export / "model.safetensors").write_bytes(b"garbage")
    images = tmp_path / "images"
    images.mkdir()
    _one_line_error(capsys, ["encode", "--model", str(export), "--input", str(images), "--output",
                             str(tmp_path / "s")], "model.safetensors: not a readable safetensors file")
    _one_line_error(capsys, ["verify", str(tmp_path / "s")], "not a directory")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        main(["--debug", "encode", "--model", str(export), "--input", str(images), "--output", str(tmp_path / "s")])


@pytest.mark.parametrize("case", ["missing", "empty", "negative"])
def test_fit_user_errors_are_one_line_before_any_training(tmp_path, capsys, case):
    args = ["fit", "--config", str(DEMO), *_tiny_overrides(DEMO, tmp_path)]
    if case == "missing":
        args.append(f"--data.train={tmp_path / 'missing'}")
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args.append(f"--data.train={tmp_path / 'empty'}")
    else:
        args.append("--trainer.max_steps=-5")
    err = _one_line_error(capsys, args)
    assert {"missing": "missing", "empty": "no images", "negative": "max_steps"}[case] in err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_the_installed_command_prints_no_traceback_for_a_user_error(tmp_path):
    exe = Path(sys.executable).with_name("vistok")
    r = subprocess.run([str(exe), "export", "--model", str(tmp_path), "--output", str(tmp_path / "e")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
