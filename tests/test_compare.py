"""scripts/compare_models.py: two exports on the same held-out photos, one side-by-side PNG and a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from vistok.tokenizers.registry import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_compare_two_exports_side_by_side(tmp_path):
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        build_tokenizer("titok-demo").save_pretrained(tmp_path / name / "export")
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_models.py"), str(tmp_path / "a" / "export"),
                        str(tmp_path / "b" / "export"), "--labels", "first,second", "--images", "4", "--show", "2",
                        "--num-tokens", "1,64", "--out", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "compare.json").read_text())
    assert report["images"] == 4 and set(report["results"]) == {"first", "second"}
    # different weights, different reconstructions: the two rows are each model's own
    assert report["results"]["first"]["64"]["psnr"] != report["results"]["second"]["64"]["psnr"]
    assert (out / "side_by_side.png").stat().st_size > 1000
    assert "first" in r.stdout and "second" in r.stdout


def test_compare_refuses_mismatched_labels(tmp_path):
    build_tokenizer("titok-demo").save_pretrained(tmp_path / "a")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_models.py"), str(tmp_path / "a"),
                        "--labels", "x,y"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "--labels names 2 models, 1 given" in r.stderr
