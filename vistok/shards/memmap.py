"""Token shards -> one flat token file for nanoGPT-style AR training (`vistok shards to-memmap SHARDS OUT`).

    OUT/tokens.bin     every sample's ids end to end, in manifest order (shard by shard, samples in shard order),
                       in the shards' dtype (uint16 when the codebook has <= 65536 codes, else int32): what
                       nanoGPT reads with np.memmap(path, dtype, mode="r")
    OUT/offsets.npy    (n + 1,) int64: sample i is tokens[offsets[i]:offsets[i + 1]]
    OUT/labels.npy     (n,) int64: each sample's label, -1 when it has none
    OUT/samples.jsonl  the metadata table, one line per sample: {"key", "shard", "length", "shape", **record}
    OUT/memmap.json    {"format", "complete", "dtype", "samples", "tokens", "tokenizer" (tokens.json),
                        "source": {"manifest_sha256", "shards"}, "files": {name: {"bytes", "sha256"}}}

The shards are read with `TokenDataset`'s checks (manifest hashes and counts, ids inside the codebook, the
model's shapes), so the export holds exactly what the encoder wrote. Resumable: after each shard the appended
files are flushed and memmap.json records how far they are valid; a rerun truncates them there and goes on from
the next shard (refused when the source manifest changed since). A finished export records every file's size
and sha256, and a rerun on it checks them instead of rewriting. One job per OUT at a time
(`vistok.shards.lock`). `MemmapTokens(OUT)` reads it back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vistok.jsonfile import read_json
from vistok.shards.manifest import MANIFEST, read_manifest, sha256_file, write_json_atomic

FORMAT = "vistok-token-memmap/1"
STATE = "memmap.json"
TOKENS, OFFSETS, LABELS, TABLE = "tokens.bin", "offsets.npy", "labels.npy", "samples.jsonl"
_LENGTHS, _LABELS = ".lengths.part", ".labels.part"  # int64 appends while the export runs
_APPENDED = (TOKENS, TABLE, _LENGTHS, _LABELS)


def _state(out: Path) -> dict[str, Any] | None:
    path = out / STATE
    if not path.is_file():
        return None
    doc = read_json(path, "")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vistok memmap export ('format' is not {FORMAT!r}); choose another OUT")
    return doc


def _check_finished(out: Path, doc: dict[str, Any]) -> list[str]:
    problems = []
    for name, want in doc["files"].items():
        f = out / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif f.stat().st_size != want["bytes"] or sha256_file(f) != want["sha256"]:
            problems.append(f"{name}: size or sha256 differs from {STATE} (damaged)")
    return problems


def shards_to_memmap(shards: str | Path, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Export a complete shard directory to `out` (see the module docstring); returns memmap.json's content.
    Raises ValueError naming the shard and key when a shard or sample is damaged, and when `out` holds an
    export of other shards or a damaged finished export."""
    from tqdm import tqdm

    from vistok.shards.dataset import TokenDataset
    from vistok.shards.lock import DirectoryLock

    shards, out = Path(shards), Path(out)
    if not shards.is_dir():
        raise FileNotFoundError(f"SHARDS {shards}: not a directory (give the directory `vistok encode` wrote)")
    manifest = read_manifest(shards)
    if not manifest.get("complete"):
        raise ValueError(f"{shards / MANIFEST}: the encode job is incomplete; finish it (rerun `vistok encode`) "
                         "before exporting")
    source = {"manifest_sha256": sha256_file(shards / MANIFEST), "shards": len(manifest["shards"])}
    if out.resolve() == shards.resolve():
        raise ValueError("OUT must be another directory than SHARDS")
    with DirectoryLock(out, "vistok shards to-memmap"):
        doc = _state(out)
        if doc is not None and doc["source"] != source:
            raise ValueError(f"{out / STATE}: exported from other shards (their manifest changed since); delete "
                             f"{out} or choose another OUT")
        if doc is not None and doc["complete"]:
            problems = _check_finished(out, doc)
            if problems:
                raise ValueError(f"{out}: the finished export is damaged ({'; '.join(problems)}); delete it and "
                                 "export again")
            return doc
        if doc is None:
            if any(p.name in (*_APPENDED, OFFSETS, LABELS) for p in out.iterdir()):
                raise ValueError(f"{out} holds export files without {STATE}; choose an empty OUT")
            ds = TokenDataset(shards)
            doc = {"format": FORMAT, "complete": False, "dtype": ds.spec.get("token_dtype") or (
                "uint16" if ds.spec["codebook_size"] <= 65536 else "int32"), "tokenizer": ds.spec,
                   "source": source, "done": 0, "samples": 0, "tokens": 0,
                   "sizes": {name: 0 for name in _APPENDED}}
            write_json_atomic(out / STATE, doc)
        for name in _APPENDED:  # drop what a killed run appended after its last commit
            with open(out / name, "ab") as f:
                f.truncate(doc["sizes"][name])
        ds = TokenDataset(shards)
        dtype = np.dtype(doc["dtype"])
        names = [s["name"] for s in manifest["shards"]]
        bar = tqdm(total=len(names), initial=doc["done"], unit="shard", desc="to-memmap", disable=not progress)
        files = {name: open(out / name, "ab") for name in _APPENDED}
        try:
            for name in names[doc["done"]:]:
                url = str(shards / name)
                n = tokens = 0
                for sample in ds._shard(url):
                    files[TOKENS].write(sample["tokens"].numpy().astype(dtype).tobytes())
                    files[_LENGTHS].write(np.int64(sample["length"]).tobytes())
                    files[_LABELS].write(np.int64(sample["label"]).tobytes())
                    row = {"key": sample["key"], "shard": name, "length": sample["length"],
                           "shape": list(sample["shape"]), **sample["info"]}
                    files[TABLE].write((json.dumps(row, separators=(",", ":")) + "\n").encode())
                    n, tokens = n + 1, tokens + sample["length"]
                for f in files.values():
                    f.flush()
                    os.fsync(f.fileno())
                doc["done"] += 1
                doc["samples"] += n
                doc["tokens"] += tokens
                doc["sizes"] = {k: f.tell() for k, f in files.items()}
                write_json_atomic(out / STATE, doc)
                bar.update(1)
        finally:
            bar.close()
            for f in files.values():
                f.close()
        return _finish(out, doc, manifest)


def _finish(out: Path, doc: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    lengths = np.fromfile(out / _LENGTHS, dtype=np.int64)
    labels = np.fromfile(out / _LABELS, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    expected = sum(s["samples"] for s in manifest["shards"])
    size = (out / TOKENS).stat().st_size
    if len(lengths) != expected or offsets[-1] * np.dtype(doc["dtype"]).itemsize != size:
        raise ValueError(f"{out}: the export holds {len(lengths)} samples and {size} token bytes, expected "
                         f"{expected} samples ({offsets[-1]} ids); delete it and export again")
    np.save(out / OFFSETS, offsets)
    np.save(out / LABELS, labels)
    files = {name: {"bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
             for name in (TOKENS, OFFSETS, LABELS, TABLE)}
    final = {k: v for k, v in doc.items() if k not in ("done", "sizes")}
    final.update({"complete": True, "files": files})
    write_json_atomic(out / STATE, final)
    for name in (_LENGTHS, _LABELS):
        (out / name).unlink()
    return final


class MemmapTokens:
    """A finished export read back: `len(m)`, `m[i]` (sample i's ids, (length,) in the stored dtype, a view of the
    memmap), `m.tokens` (the whole flat array, for random windows as nanoGPT samples them), `m.offsets`,
    `m.labels`, `m.rows()` (the metadata table)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        doc = _state(self.out)
        if doc is None or not doc.get("complete"):
            raise ValueError(f"{self.out}: no finished memmap export ({STATE} missing or incomplete); run `vistok "
                             "shards to-memmap` to finish it")
        self.info = doc
        self.tokens = np.memmap(self.out / TOKENS, dtype=np.dtype(doc["dtype"]), mode="r")
        self.offsets = np.load(self.out / OFFSETS, allow_pickle=False)
        self.labels = np.load(self.out / LABELS, allow_pickle=False)
        if len(self.offsets) != doc["samples"] + 1 or self.offsets[-1] != len(self.tokens):
            raise ValueError(f"{self.out}: {OFFSETS} does not match {TOKENS} (damaged export)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def rows(self) -> Iterator[dict[str, Any]]:
        with open(self.out / TABLE) as f:
            for line in f:
                yield json.loads(line)
