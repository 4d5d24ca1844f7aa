"""`manifest.json`: the record of an encode job, and its commit log.

Layout (docs/architecture.md#token-shards):
  {"format": "vistok-token-shards/1", "complete": bool,
   "tokenizer": {"model", "class", "weights_sha256", "tokens": <tokens.json of the model>},
   "job": {"input_kind", "inputs", "num_inputs", "inputs_sha256", "tasks", "num_tokens", "target_psnr",
           "shard_size"},
   "shards": [{"name", "task", "samples", "tokens", "bytes", "sha256"}],    every finished shard
   "skipped": [{"task", "source", "reason"}],                                every input that was not encoded
   "tasks_done": [task indices], "totals": {"inputs", "encoded", "skipped", "tokens", "bytes", "shards"}}

A task is *done* only once its shards have been renamed from `*.tar.partial` to `*.tar` and the manifest
that lists them has been atomically replaced (write a temporary file, fsync, `os.replace`). A single
process writes `manifest.json` itself after every task; in a distributed job each rank writes
`manifest.rank{r:03d}.json` and rank 0 merges them into `manifest.json` at the end. A rerun reads all of
them, refuses a different job (other inputs, model, K or shard size), verifies every shard of the done
tasks (size, sha256, sample count) and redoes the unfinished tasks and those whose shards are damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vistok.jsonfile import read_json

FORMAT = "vistok-token-shards/1"
MANIFEST = "manifest.json"
RANK_GLOB = "manifest.rank*.json"


def rank_file(output: Path, rank: int) -> Path:
    return output / f"manifest.rank{rank:03d}.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest (or a directory's manifest.json), checked field by field (`check_manifest`): a hand-edited or
    damaged one gives one ValueError naming the file and the field, never a KeyError or TypeError later."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    doc = read_json(path, "not a vistok token-shard directory")
    check_manifest(doc, str(path))
    return doc


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind(value: Any) -> str:
    return type(value).__name__ if not isinstance(value, (int, float, str)) or isinstance(value, bool) else \
        repr(value)


def check_manifest(doc: Any, where: str) -> None:
    """The layout of the module docstring, as far as readers and a rerun rely on it: `format`, `tokenizer.tokens`
    with a positive `codebook_size`, `shards` a list of {name (a plain file name), task, samples, bytes, sha256,
    tokens when given}, `skipped` a list of objects with a task, `tasks_done` a list of task indices, `job` and
    `totals` objects when given."""
    from vistok.shards.names import check_shard_name

    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a JSON object (a {type(doc).__name__}), expected a vistok token-shard "
                         "manifest")
    if doc.get("format") != FORMAT:
        raise ValueError(f"{where}: 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
    tok = doc.get("tokenizer")
    if not isinstance(tok, dict) or not isinstance(tok.get("tokens"), dict):
        missing = "no 'tokenizer'" if tok is None else "'tokenizer' without its 'tokens' block"
        raise ValueError(f"{where}: {missing} (the model's tokens.json, needed to check the ids): not a manifest "
                         "written by `vistok encode`, or a damaged one")
    v = tok["tokens"].get("codebook_size")
    if not _integer(v) or v < 1:
        raise ValueError(f"{where}: 'tokenizer.tokens.codebook_size' is {v!r}, expected a positive integer")
    for field, kind in (("job", dict), ("totals", dict), ("shards", list), ("skipped", list), ("tasks_done", list)):
        if field in doc and not isinstance(doc[field], kind):
            raise ValueError(f"{where}: {field!r} is a {type(doc[field]).__name__}, expected a {kind.__name__}")
    if "shards" not in doc:
        raise ValueError(f"{where}: no 'shards' list")
    names = set()
    for i, s in enumerate(doc["shards"]):
        at = f"shards[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where}: {at} is {_kind(s)}, expected an object with name, task, samples, bytes "
                             "and sha256")
        for field in ("name", "task", "samples", "bytes", "sha256"):
            if field not in s:
                raise ValueError(f"{where}: {at} has no {field!r}")
        check_shard_name(s["name"], f"{where}: {at}")
        if s["name"] in names:
            raise ValueError(f"{where}: shard {s['name']} is listed twice")
        names.add(s["name"])
        for field in ("task", "samples", "bytes", "tokens"):
            if field in s and not _integer(s[field]):
                raise ValueError(f"{where}: {at}[{field!r}] is {_kind(s[field])}, expected an integer >= 0")
        sha = s["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"{where}: {at}['sha256'] is {_kind(sha)}, expected 64 lowercase hex digits")
    for i, s in enumerate(doc.get("skipped", [])):
        if not isinstance(s, dict) or not _integer(s.get("task")):
            raise ValueError(f"{where}: skipped[{i}] is {_kind(s)}, expected an object with a task index")
    for i, t in enumerate(doc.get("tasks_done", [])):
        if not _integer(t):
            raise ValueError(f"{where}: tasks_done[{i}] is {_kind(t)}, expected a task index")


def manifest_problems(doc: dict[str, Any], where: str) -> list[str]:
    """What does not add up in a well-formed manifest (a shard entry removed or edited by hand): the totals
    against the shard entries, and every shard's task among the done tasks. Readers refuse such a manifest
    instead of returning fewer samples."""
    problems = []
    shards = doc["shards"]
    totals = doc.get("totals")
    if totals is not None:
        encoded = sum(s["samples"] for s in shards)
        if totals.get("encoded") != encoded:
            problems.append(f"{where}: totals.encoded is {totals.get('encoded')}, the shards list {encoded} samples "
                            "(a shard entry was removed or edited)")
        if "shards" in totals and totals["shards"] != len(shards):
            problems.append(f"{where}: totals.shards is {totals['shards']}, {len(shards)} shards are listed")
    done = set(doc.get("tasks_done", []))
    stray = sorted(s["name"] for s in shards if s["task"] not in done)
    if "tasks_done" in doc and stray:
        problems.append(f"{where}: {len(stray)} shards belong to tasks that are not done (first: {stray[0]})")
    return problems


class Manifest:
    """Done tasks of one job (all ranks, all earlier runs) and this rank's commit file."""

    def __init__(self, output: Path, tokenizer: dict[str, Any], job: dict[str, Any], rank: int = 0,
                 world_size: int = 1) -> None:
        self.output, self.tokenizer, self.job = output, tokenizer, job
        self.own_file = output / MANIFEST if world_size == 1 else rank_file(output, rank)
        self.tasks: dict[int, dict[str, Any]] = {}  # task -> {"shards": [...], "skipped": [...]}
        for f in [output / MANIFEST, *sorted(output.glob(RANK_GLOB))]:
            if f.is_file():
                self._absorb(f)
        self.own: set[int] = set()
        for stale in output.glob(f".{self.own_file.name}.*.tmp"):  # a commit cut short by a kill
            stale.unlink()

    def _absorb(self, f: Path) -> None:
        doc = read_manifest(f)
        for key, want in (("job", self.job), ("tokenizer", self.tokenizer)):
            have = doc.get(key, {})
            diff = sorted(k for k in set(have) | set(want) if k != "model" and have.get(k) != want.get(k))
            if diff:
                hint = ""
                if "shard_format" in diff:
                    have_format = have.get("shard_format", "per-sample")
                    hint = f" (its shards are {have_format}: pass --format {have_format} to resume it)"
                raise ValueError(f"{f} belongs to a different encode job ({key} differs in {', '.join(diff)}){hint}; "
                                 "use another --output directory, or delete it to start over")
        for t in doc.get("tasks_done", []):
            self.tasks[t] = {"shards": [s for s in doc["shards"] if s["task"] == t],
                             "skipped": [s for s in doc["skipped"] if s["task"] == t]}

    def done(self, task: int) -> bool:
        return task in self.tasks

    def forget(self, task: int) -> None:
        """Mark a done task as not done (its shards are damaged or missing): the run redoes it."""
        self.tasks.pop(task, None)
        self.own.discard(task)

    def adopt(self, tasks: list[int]) -> None:
        """Carry these already-done tasks in this rank's file (so that rewriting it never forgets them)."""
        self.own |= {t for t in tasks if t in self.tasks}

    def commit(self, task: int, shards: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> None:
        self.tasks[task] = {"shards": shards, "skipped": skipped}
        self.own.add(task)
        write_json_atomic(self.own_file, self.to_json(self.own if self.own_file.name != MANIFEST else None))

    def to_json(self, only: set[int] | None = None, complete: bool = False) -> dict[str, Any]:
        tasks = sorted(self.tasks if only is None else only)
        shards = sorted((s for t in tasks for s in self.tasks[t]["shards"]), key=lambda s: s["name"])
        skipped = [s for t in tasks for s in self.tasks[t]["skipped"]]
        encoded = sum(s["samples"] for s in shards)
        totals = {"inputs": encoded + len(skipped), "encoded": encoded, "skipped": len(skipped),
                  "tokens": sum(s.get("tokens", 0) for s in shards), "bytes": sum(s["bytes"] for s in shards),
                  "shards": len(shards)}
        return {"format": FORMAT, "complete": complete, "tokenizer": self.tokenizer, "job": self.job,
                "shards": shards, "skipped": skipped, "tasks_done": tasks, "totals": totals}

    def reload(self) -> None:
        """Re-read every manifest file (rank 0, after the other ranks finished)."""
        for f in [self.output / MANIFEST, *sorted(self.output.glob(RANK_GLOB))]:
            if f.is_file():
                self._absorb(f)

    def finalize(self, num_tasks: int) -> dict[str, Any]:
        """Write the merged manifest.json (complete when every task is done) and drop the rank files."""
        doc = self.to_json(complete=len(self.tasks) == num_tasks)
        write_json_atomic(self.output / MANIFEST, doc)
        for f in self.output.glob(RANK_GLOB):
            f.unlink()
        return doc
