"""`vistok verify SHARDS`: check a token-shard directory against its manifest.

The manifest must be well formed and add up (`manifest.check_manifest`, `manifest.manifest_problems`); every
listed shard must exist with the listed size, sha256 and sample count, and every sample (per-sample or packed)
must decode as a reader decodes it: ids inside the codebook, the model's shape ((K,), or (T', h*w) for a grid
video model), a valid json record, and a key that is a safe relative name (`vistok.shards.names`: `vistok
decode` turns keys into file names). The job must be complete, and no unlisted `tokens-*` file or rank
manifest may lie beside it. `verify_shard` (size, hash and count) is also what an encode rerun uses to find
the tasks it must redo.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from vistok.shards.manifest import MANIFEST, RANK_GLOB, manifest_problems, read_manifest


def verify_shard(path: Path, entry: dict[str, Any], codebook_size: int | None = None,
                 deep: bool = False, frame_tokens: int | None = None) -> list[str]:
    """Problems of one listed shard (empty when it is whole): missing, size, sha256, sample count; with
    `deep`, also every sample's content and key."""
    from vistok.shards.names import key_path
    from vistok.shards.samples import ShardSamples

    name = path.name
    if not path.is_file():
        return [f"{name}: missing"]
    data = path.read_bytes()
    problems = []
    if len(data) != entry["bytes"]:
        problems.append(f"{name}: {len(data)} bytes, the manifest lists {entry['bytes']} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest (the file is damaged)")
    found: list[str] = []
    samples = ShardSamples(io.BytesIO(data), name, codebook_size, frame_tokens, found.append)
    try:
        for sample in samples:
            try:
                key_path(sample["key"])
            except ValueError as e:
                found.append(f"{name}, {e}")
    except Exception as e:
        problems.append(f"{name}: not a readable tar after {samples.count} samples ({type(e).__name__}: {e})")
    if deep:
        problems += [p.removeprefix("shard ") for p in found]
    else:
        problems += [p for p in found if "appears twice" in p]
    if samples.count != entry["samples"]:
        problems.append(f"{name}: holds {samples.count} samples, the manifest lists {entry['samples']}")
    return problems


def verify_shards(directory: str | Path) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) for a shard directory; no problems means every listed sample reads back as written."""
    from vistok.shards.samples import frame_tokens_of

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    doc = read_manifest(directory)
    problems: list[str] = []
    spec = doc["tokenizer"]["tokens"]
    if not doc.get("complete"):
        problems.append(f"{MANIFEST}: the job is incomplete ({len(doc.get('tasks_done', []))} of "
                        f"{doc.get('job', {}).get('tasks', '?')} tasks done); rerun `vistok encode` to finish it")
    problems += manifest_problems(doc, MANIFEST)
    shards = doc["shards"]
    for s in shards:
        problems += verify_shard(directory / s["name"], s, spec["codebook_size"], deep=True,
                                 frame_tokens=frame_tokens_of(spec))
    listed = {s["name"] for s in shards}
    for f in sorted(directory.glob("tokens-*")):
        if f.name not in listed:
            problems.append(f"{f.name}: not listed in {MANIFEST} (left by an interrupted run, or its entry was "
                            "removed)")
    for f in sorted(directory.glob(RANK_GLOB)):
        problems.append(f"{f.name}: a rank manifest of an unfinished distributed run")
    encoded = sum(s["samples"] for s in shards)
    if "totals" not in doc:
        problems.append(f"{MANIFEST}: no totals")
    counts = {"shards": len(shards), "samples": encoded, "skipped": len(doc.get("skipped", []))}
    return problems, counts
