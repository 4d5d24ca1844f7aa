"""Results side by side, and the protocols they were measured under.

Every `vistok eval` result records, per metric column, how the number was measured (`protocol` in metrics.json /
video_metrics.json: the network and its weights' sha256, resolution and resize, image or clip count, frames,
fps, reference statistics). Two rFIDs on different image counts, or LPIPS from different weights, are not
comparable; `compare(a, b)` puts two results next to each other and names every protocol field that differs,
`protocol_differences` lists them, and `protocol_lines` is how a model card or a CSV header writes one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The headline numbers of each kind of result, in the order a table shows them.
IMAGE_COLUMNS = ("psnr", "ssim", "lpips_vgg", "lpips_alex", "rfid")
VIDEO_COLUMNS = ("psnr", "ssim", "lpips_vgg", "lpips_alex", "flicker", "fvd")


def load_result(path: str | Path) -> dict[str, Any]:
    """A metrics.json / video_metrics.json written by `vistok eval`, with `source` set to its path."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("metrics.json", "video_metrics.json") if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no metrics.json or video_metrics.json in this directory")
        path = found[0]
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON results file ({e})") from None
    if not isinstance(result, dict) or not ("rows" in result or "clips" in result):
        raise ValueError(f"{path}: not a `vistok eval` result (no 'rows' or 'clips')")
    return {**result, "source": str(path)}


def is_video(result: dict[str, Any]) -> bool:
    return "clips" in result and "rows" not in result


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers a comparison shows: a video result's means, or an image result's tokenizer row at its
    largest token count (`tokens` says which)."""
    if is_video(result):
        return {k: result.get(k) for k in VIDEO_COLUMNS}
    rows = [r for r in result.get("rows", []) if r.get("method") == "tokenizer"]
    if not rows:
        return {}
    row = max(rows, key=lambda r: r.get("tokens") or 0)
    return {"tokens": row.get("tokens"), **{k: row.get(k) for k in IMAGE_COLUMNS}}


def protocol_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Every protocol field that differs between two results, one line each: `column.field: A vs B`, a column
    measured in only one of them, or a result that records no protocol at all."""
    pa, pb = a.get("protocol"), b.get("protocol")
    missing = [name for name, p in (("A", pa), ("B", pb)) if not isinstance(p, dict)]
    if missing:
        return [f"{' and '.join(missing)} record(s) no protocol (written by an older vistok): the numbers cannot be "
                "checked for comparability"]
    out = []
    if is_video(a) != is_video(b):
        out.append(f"kind: {'video' if is_video(a) else 'image'} vs {'video' if is_video(b) else 'image'}")
    for column in sorted(set(pa) | set(pb)):
        ca, cb = pa.get(column), pb.get(column)
        if ca is None and cb is None:
            continue
        if ca is None or cb is None:
            out.append(f"{column}: measured only in {'B' if ca is None else 'A'}")
            continue
        for field in list(dict.fromkeys([*ca, *cb])):
            va, vb = ca.get(field), cb.get(field)
            if va != vb:
                out.append(f"{column}.{field}: {_short(va)} vs {_short(vb)}")
    return out


def compare(a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str] = ("A", "B")) -> tuple[str, list[str]]:
    """(a table of both results' headline numbers side by side, the protocol differences). Each difference is
    a warning: the numbers of that column are not comparable as they stand."""
    ha, hb = headline(a), headline(b)
    keys = list(dict.fromkeys([*ha, *hb]))
    width = max(12, *(len(x) + 2 for x in labels))
    lines = [f"{'metric':<12}{labels[0]:>{width}}{labels[1]:>{width}}"]
    for k in keys:
        lines.append(f"{k:<12}{_fmt(ha.get(k)):>{width}}{_fmt(hb.get(k)):>{width}}")
    differences = protocol_differences(a, b)
    return "\n".join(lines), differences


def protocol_lines(protocol: dict[str, Any] | None) -> list[str]:
    """`column: field=value; ...` per measured column (what metrics.csv's `# ` lines and a model card show)."""
    return [f"{column}: " + "; ".join(f"{k}={v}" for k, v in p.items() if v is not None)
            for column, p in (protocol or {}).items() if p]


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."
