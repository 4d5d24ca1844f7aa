"""A video model's commands skip and report what they cannot read (issue 26): an image whose header claims more
than 179 MP (PIL's DecompressionBombError, which crashed a whole eval / encode / reconstruct before), a file that
is not a video, and `eval` records every skipped file with its reason in video_metrics.json."""

from __future__ import annotations

import io
import json
import random
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from vistok.cli import main
from vistok.data.images import load_rgb
from vistok.data.sample import photo_dir
from vistok.data.sample_clips import render_move
from vistok.data.video_io import write_video
from vistok.tokenizers import build_tokenizer


def bomb_png(w: int = 20000, h: int = 10000) -> bytes:
    """A valid 1x1 PNG whose header claims w x h pixels (200 MP: above PIL's 179 MP refusal)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_clips")
    photo = load_rgb(photo_dir() / "chelsea.png")
    for i in range(2):
        write_video(root / f"good{i}.mp4", render_move(photo, "pan", random.Random(i), 9, 32), fps=8)
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "junk.mp4").write_bytes(b"not a video" * 20)
    return root


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("omni-tiny").eval().save_pretrained(tmp_path_factory.mktemp("omni") / "m")


def test_eval_skips_the_bomb_and_the_junk_and_records_them(folder, export, tmp_path, capsys):
    out = tmp_path / "eval"
    main(["eval", "--model", str(export), "--input", str(folder), "--output", str(out)])
    result = json.loads((out / "video_metrics.json").read_text())
    assert result["clips"] == 2
    skipped = {s["file"]: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"bomb.png", "junk.mp4"}, skipped
    assert "bomb.png" in skipped["bomb.png"] and "too large" in skipped["bomb.png"], skipped
    assert "skipped 2 unreadable file(s)" in capsys.readouterr().out


def test_reconstruct_and_encode_skip_the_bomb(folder, export, tmp_path, capsys):
    main(["reconstruct", "--model", str(export), "--input", str(folder), "--output", str(tmp_path / "rec")])
    assert "2 unreadable files skipped" in capsys.readouterr().out
    main(["encode", "--model", str(export), "--input", str(folder), "--output", str(tmp_path / "shards"),
          "--workers", "0"])
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    reasons = json.dumps(manifest.get("skipped", manifest))
    assert "bomb.png" in reasons, reasons[:500]
