"""`vistok fit --ckpt_path FILE` with a checkpoint holding pickled objects (issue 26): one line saying what it holds
and exit status 1, not an UnpicklingError traceback; nothing in the file is unpickled."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from tests.test_configs import _tiny_overrides
from vistok.cli import main

CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


@pytest.mark.parametrize("content", ["pickled", "garbage"])
def test_resuming_from_a_pickled_or_damaged_checkpoint_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.ckpt"
    if content == "pickled":
        torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1.0)}, bad)
    else:
        bad.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(CONFIG), *_tiny_overrides(CONFIG, tmp_path / "run"), "--ckpt_path", str(bad)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vistok fit: error: --ckpt_path {bad}: cannot resume"), err
    if content == "pickled":
        assert "pickled objects" in err[0] and "Namespace" in err[0], err


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIG), *_tiny_overrides(CONFIG, tmp_path / "run"), "--ckpt_path",
              str(tmp_path / "nope.ckpt")])
    assert "no such checkpoint file" in capsys.readouterr().err
