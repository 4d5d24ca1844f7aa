"""`vistok verify SHARDS`: check a token-shard directory against its manifest.

Every listed shard must exist with the listed size, sha256 and sample count, and every sample must decode
(tokens.npy a 1-D integer array with ids inside the codebook, json valid); the manifest must be complete and
its totals must add up; no unlisted `tokens-*` file or rank manifest may lie beside it. `verify_shard` (size,
hash and count) is also what an encode rerun uses to find the tasks it must redo.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from vistok.shards.manifest import RANK_GLOB, read_manifest


def verify_shard(path: Path, entry: dict[str, Any], codebook_size: int | None = None,
                 deep: bool = False) -> list[str]:
    """Problems of one listed shard (empty when it is whole): missing, size, sha256, sample count; with
    `deep`, also every sample's content."""
    from vistok.shards.dataset import decode_sample
    from vistok.shards.inputs import tar_samples

    name = path.name
    if not path.is_file():
        return [f"{name}: missing"]
    data = path.read_bytes()
    problems = []
    if len(data) != entry["bytes"]:
        problems.append(f"{name}: {len(data)} bytes, the manifest lists {entry['bytes']} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest (the file is damaged)")
    count, keys = 0, set()
    try:
        for sample in tar_samples(io.BytesIO(data)):
            count += 1
            if sample["__key__"] in keys:
                problems.append(f"{name}: key {sample['__key__']} appears twice")
            keys.add(sample["__key__"])
            if deep:
                try:
                    decode_sample(sample, name, codebook_size)
                except ValueError as e:
                    problems.append(str(e).removeprefix("shard "))
    except Exception as e:
        problems.append(f"{name}: not a readable tar after {count} samples ({type(e).__name__}: {e})")
    if count != entry["samples"]:
        problems.append(f"{name}: holds {count} samples, the manifest lists {entry['samples']}")
    return problems


def verify_shards(directory: str | Path) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) for a shard directory; no problems means every listed sample reads back as written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    doc = read_manifest(directory)
    problems: list[str] = []
    v = doc.get("tokenizer", {}).get("tokens", {}).get("codebook_size")
    if not doc.get("complete"):
        problems.append(f"manifest.json: the job is incomplete ({len(doc.get('tasks_done', []))} of "
                        f"{doc.get('job', {}).get('tasks', '?')} tasks done); rerun `vistok encode` to finish it")
    shards = doc.get("shards", [])
    for s in shards:
        problems += verify_shard(directory / s["name"], s, v, deep=True)
    listed = {s["name"] for s in shards}
    for f in sorted(directory.glob("tokens-*")):
        if f.name not in listed:
            problems.append(f"{f.name}: not listed in manifest.json (left by an interrupted run?)")
    for f in sorted(directory.glob(RANK_GLOB)):
        problems.append(f"{f.name}: a rank manifest of an unfinished distributed run")
    encoded = sum(s["samples"] for s in shards)
    if doc.get("totals", {}).get("encoded") != encoded:
        problems.append(f"manifest.json: totals.encoded is {doc.get('totals', {}).get('encoded')}, the shards "
                        f"list {encoded} samples")
    counts = {"shards": len(shards), "samples": encoded, "skipped": len(doc.get("skipped", []))}
    return problems, counts
