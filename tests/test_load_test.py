"""`scripts/load_test.py` end to end on a tiny model: both modes run against real server processes on 127.0.0.1,
every request succeeds, and the table, the JSON and the PNG are written. Short levels; the whole run is bounded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from tests.serve_helpers import ROOT  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402


def test_load_test_runs_both_modes_and_writes_its_figures(tmp_path):
    torch.manual_seed(0)
    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "m")
    out = tmp_path / "lt" / "throughput.png"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load_test.py"), "--model", str(model), "--clients", "1,4",
         "--duration", "1", "--warmup", "0.3", "--max-requests", "300", "--timeout", "30", "--device", "cpu",
         "--output", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "clients   4: batching gives" in run.stdout
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["results"]) == {"on", "off"}
    for mode, rows in figures["results"].items():
        assert [r["clients"] for r in rows] == [1, 4]
        for r in rows:
            assert r["requests"] > 0 and r["errors"] == 0, (mode, r)
            assert r["p50_ms"] <= r["p99_ms"]
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > 100
