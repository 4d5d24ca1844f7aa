"""Reading token shards back: `TokenDataset` (webdataset) and `collate_tokens` (padding + mask).

    ds = TokenDataset("out/")                 # a shard directory: only shards its manifest lists
    ds = TokenDataset("out/tokens-{000000..000009}-000.tar", shuffle=1000)
    loader = DataLoader(ds, batch_size=32, collate_fn=ds.collate, num_workers=2)
    for batch in loader: batch["tokens"] (B, L) int64, batch["mask"] (B, L) bool, batch["length"], batch["label"]

Both shard formats read the same way (per-sample members, or packed: every sample of a shard in one member,
`vistok.shards.packed`), with the same shuffle buffer, rank/worker split and checks.

Samples are {"key", "tokens": (K,) int64, "length": K, "label": int (-1 when the input had none), "shape",
"info" (the sample's json)}. Video shards of a grid model (OmniTokenizer style) hold tokens.npy of shape (T', h*w):
`tokens` is that flattened time-major (the order the model reads), `shape` is (T', h*w), and a sample of another
width (or a 2-D sample for a 1D model) is refused naming the shard and key; the json also records frames, fps,
size, source and token_grid. Shards are split by rank and by DataLoader worker, so under DDP each rank reads its
own shards.

Nothing is read silently wrong: a shard that a manifest lists (given directly, or found beside the urls) is
checked against its sha256 and sample count before and after its samples are used, and every sample's ids
must lie in the codebook (from the manifest, or `codebook_size`). A damaged shard or sample raises a
ValueError naming the shard and the key, or with `on_error="skip"` is skipped with a warning and counted in
`problems` (per process: with DataLoader workers, each worker counts its own; the warnings name them all).
A manifest marked incomplete gives a warning; one that does not add up (a shard entry removed: its totals no
longer match) is refused, so a reader never returns fewer samples than the job wrote without saying so.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from vistok.shards.manifest import MANIFEST, manifest_problems, read_manifest
from vistok.shards.packed import PACK_EXT, Pack, unpack

log = logging.getLogger("vistok.shards")


class ShardError(ValueError):
    """A damaged token shard or sample; the message names the shard (and the key)."""


def collate_tokens(batch: list[dict[str, Any]], pad_id: int = 0) -> dict[str, Any]:
    """Pad variable-length sequences on the right with `pad_id`; `mask` is True on real tokens."""
    if not batch:
        raise ValueError("collate_tokens got an empty batch")
    lengths = torch.tensor([int(b["length"]) for b in batch])
    tokens = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)  # (B, L)
    for i, b in enumerate(batch):
        tokens[i, : b["length"]] = b["tokens"]
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]  # (B, L)
    return {"tokens": tokens, "mask": mask, "length": lengths,
            "label": torch.tensor([int(b["label"]) for b in batch]), "key": [b["key"] for b in batch]}


class TokenDataset(IterableDataset):
    """Token sequences from webdataset shards written by `vistok encode`.

    `urls`: a shard directory (its manifest.json), a manifest path, a brace pattern / `::` list, or a list
    of urls. `spec` is the tokenizer's tokens.json content when a manifest was found (vocab size, special
    ids), else None; `collate` pads with the `pad` special id when known (else `pad_id`). `codebook_size`
    bounds the ids when no manifest gives it. `on_error`: "raise" (default) or "skip".
    """

    def __init__(self, urls: str | Path | list[str], shuffle: int = 0, shard_shuffle: bool = False,
                 pad_id: int | None = None, seed: int = 0, on_error: str = "raise",
                 codebook_size: int | None = None, frame_tokens: int | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.shuffle, self.shard_shuffle, self.seed, self.on_error = shuffle, shard_shuffle, seed, on_error
        self.problems: list[str] = []
        self.spec: dict[str, Any] | None = None
        self.expected: dict[str, dict[str, Any]] = {}  # url -> manifest entry (sha256, samples)
        self.urls = self._resolve(urls)
        if codebook_size is None and self.spec:
            codebook_size = int(self.spec["codebook_size"])
        self.codebook_size = codebook_size
        self.frame_tokens = frame_tokens_of(self.spec) or frame_tokens
        if pad_id is None:
            pad_id = (self.spec or {}).get("special_tokens", {}).get("pad", 0)
        self.pad_id = pad_id
        self.collate = functools.partial(collate_tokens, pad_id=pad_id)

    def _use_manifest(self, path: str | Path, only: set[str] | None = None) -> list[str]:
        doc = read_manifest(path)
        manifest = Path(path) if str(path).endswith(".json") else Path(path) / MANIFEST
        root = manifest.parent
        if not doc.get("complete"):
            warnings.warn(f"{manifest}: the encode job is incomplete ({len(doc.get('tasks_done', []))} of "
                          f"{doc.get('job', {}).get('tasks', '?')} tasks done); rerun `vistok encode` to finish it",
                          stacklevel=3)
        for message in manifest_problems(doc, str(manifest)):  # never fewer samples than the job wrote, silently
            self._problem(message + "; `vistok verify` checks the whole directory")
        self.spec = doc["tokenizer"]["tokens"]
        found = []
        for s in doc["shards"]:
            url = str(root / s["name"])
            if only is None or url in only:
                self.expected[url] = s
                found.append(url)
        return found

    def _resolve(self, urls: str | Path | list[str]) -> list[str]:
        if isinstance(urls, (str, Path)) and (Path(urls).is_dir() or str(urls).endswith(".json")):
            found = self._use_manifest(urls)
            if not found:
                raise ValueError(f"{urls}: the manifest lists no shards")
            return found
        from vistok.shards.inputs import expand_urls

        found = expand_urls([str(urls)] if isinstance(urls, (str, Path)) else [str(u) for u in urls])
        if not found:
            raise ValueError(f"no token shards in {urls!r}")
        folders = {str(Path(u).parent) for u in found if "://" not in u and not u.startswith("pipe:")}
        if len(folders) == 1 and (Path(folders.pop()) / MANIFEST).is_file():  # the manifest beside the shards
            self._use_manifest(Path(found[0]).parent, only=set(found))
        return found

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        stages: list[Any] = [wds.SimpleShardList(self.urls)]
        if self.shard_shuffle:
            stages.append(wds.filters.detshuffle(100, seed=self.seed))
        stages += [wds.split_by_node, wds.split_by_worker, self._samples]
        if self.shuffle:
            stages.append(wds.filters.shuffle(self.shuffle))
        yield from wds.DataPipeline(*stages)

    def _problem(self, message: str) -> None:
        if self.on_error == "raise":
            raise ShardError(message)
        log.warning("skipping %s", message)
        self.problems.append(message)

    def _samples(self, source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in source:
            yield from self._shard(item["url"])

    def _shard(self, url: str) -> Iterator[dict[str, Any]]:
        from webdataset.gopen import gopen

        entry = self.expected.get(url)
        if entry is not None:  # listed by a manifest: check the whole file before using any sample
            try:
                data = Path(url).read_bytes()
            except OSError as e:
                return self._problem(f"shard {url}: cannot be read ({e.strerror or e})")
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"]:
                return self._problem(f"shard {url}: sha256 {digest[:16]}... differs from the manifest's "
                                     f"{entry['sha256'][:16]}... ({len(data)} bytes, listed {entry['bytes']}): "
                                     "the file is damaged; rerun `vistok encode` to repair it")
            stream: Any = io.BytesIO(data)
        else:
            try:
                stream = gopen(url, "rb")
            except Exception as e:
                return self._problem(f"shard {url}: cannot be opened ({e})")
        samples = ShardSamples(stream, url, self.codebook_size, self.frame_tokens, self._problem)
        try:
            yield from samples
        except ShardError:
            raise
        except Exception as e:
            return self._problem(f"shard {url}: not a readable tar after {samples.count} samples "
                                 f"({type(e).__name__}: {e})")
        finally:
            stream.close()
        if entry is not None and samples.count != entry["samples"]:
            self._problem(f"shard {url}: holds {samples.count} samples, the manifest lists {entry['samples']}")


def frame_tokens_of(spec: dict[str, Any] | None) -> int | None:
    """h*w of a grid video model's tokens.json (`token_grid` [T', h, w]), else None (1D tokens)."""
    grid = (spec or {}).get("token_grid") or []
    return math.prod(grid[1:]) if len(grid) == 3 else None


class ShardSamples:
    """The samples of one shard stream, either format (per-sample members or packed, `vistok.shards.packed`), in
    order. Each problem (a key seen twice in the shard, a sample that does not decode) goes to `problem`, which
    raises or records it, and that sample is left out. `count` is how many samples the shard held, good or not
    (what a manifest's count is checked against). Iterating raises, after the samples before it, when the stream
    is not a readable tar."""

    def __init__(self, stream: Any, url: str, codebook_size: int | None, frame_tokens: int | None,
                 problem: Callable[[str], None]) -> None:
        self.stream, self.url, self.codebook_size, self.frame_tokens = stream, url, codebook_size, frame_tokens
        self.problem = problem
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from vistok.shards.inputs import tar_samples

        keys: set[str] = set()
        for raw in tar_samples(self.stream):
            if PACK_EXT in raw:
                where = f"shard {self.url}, member {raw['__key__']}.{PACK_EXT}"
                try:
                    if len(raw) != 2:
                        raise ValueError(f"{where}: other members share its key ({', '.join(sorted(raw)[1:])})")
                    block = unpack(raw[PACK_EXT], where)
                except ValueError as e:
                    self.count += 1  # at least one sample is lost: the manifest's count check says so too
                    self.problem(str(e))
                    continue
                self.count += len(block)
                yield from decode_pack(block, self.url, self.codebook_size, self.frame_tokens, self.problem, keys)
                continue
            self.count += 1
            key = raw["__key__"]
            if key in keys:
                self.problem(f"shard {self.url}, sample {key}: the key appears twice in the shard")
                continue
            keys.add(key)
            try:
                yield decode_sample(raw, self.url, self.codebook_size, self.frame_tokens)
            except ValueError as e:
                self.problem(str(e))


def _check_shape(where: str, what: str, shape: tuple[int, ...], frame_tokens: int | None) -> None:
    if len(shape) == 2 and (frame_tokens is None or shape[1] != frame_tokens):
        expected = f"(T', {frame_tokens}) of a grid video model" if frame_tokens else "(K,): the model gives 1D tokens"
        raise ValueError(f"{where}: {what} has shape {shape}, expected {expected}")


def _check_record(where: str, info: dict[str, Any], length: int) -> int:
    """The sample's json against its ids; returns the label (-1 when none)."""
    if "K" in info and info["K"] != length:
        raise ValueError(f"{where}: json says K={info['K']}, tokens.npy holds {length} ids")
    grid = info.get("token_grid")
    if grid is not None and (not isinstance(grid, list) or not all(isinstance(d, int) for d in grid)
                             or math.prod(grid) != length):
        raise ValueError(f"{where}: json says token_grid {grid}, tokens.npy holds {length} ids")
    label = info.get("label")
    try:
        return -1 if label is None else int(label)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: label {label!r} is not an integer") from None


def _outside(ids: np.ndarray, codebook_size: int) -> str:
    bad = (ids < 0) | (ids >= codebook_size)
    return (f"token id {int(ids[bad][0])} outside the codebook 0..{codebook_size - 1} "
            f"({int(bad.sum())} of {ids.size} ids)")


def decode_pack(block: Pack, url: str, codebook_size: int | None, frame_tokens: int | None,
                problem: Callable[[str], None], keys: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of a packed member, each checked as `decode_sample` checks a per-sample one (ids inside the
    codebook, the shape of the model, the json record); ids are checked for the whole block at once."""
    keys = set() if keys is None else keys
    n = len(block)
    if not n:
        return
    lengths = block.lengths.tolist()
    labels = block.labels.tolist()
    bad_rows: set[int] = set()
    if codebook_size is not None:
        t = block.tokens
        real = np.arange(t.shape[1])[None, :] < block.lengths[:, None]  # (n, L): True on ids, False on padding
        outside = t >= codebook_size if t.dtype.kind == "u" else (t < 0) | (t >= codebook_size)
        bad_rows = set(np.flatnonzero((outside & real).any(axis=1)).tolist())
    ids = torch.from_numpy(block.tokens.astype(np.int64))  # (n, L)
    for i in range(n):
        key, length = block.keys[i], lengths[i]
        where = f"shard {url}, sample {key}"
        if key in keys:
            problem(f"{where}: the key appears twice in the shard")
            continue
        keys.add(key)
        shape = block.shapes[i] if block.shapes is not None else (length,)
        info = block.infos[i]
        try:
            if i in bad_rows:
                raise ValueError(f"{where}: {_outside(block.tokens[i, :length].astype(np.int64), codebook_size)}")
            if math.prod(shape) != length or len(shape) > 2:
                raise ValueError(f"{where}: shape {shape} does not hold its {length} ids")
            _check_shape(where, "ids", shape, frame_tokens)
            label = _check_record(where, info, length)
            if label != labels[i]:
                raise ValueError(f"{where}: label {labels[i]} differs from the json's {label}")
        except ValueError as e:
            problem(str(e))
            continue
        yield {"key": key, "tokens": ids[i, :length].clone(), "length": length, "label": label, "shape": shape,
               "info": info}


def decode_sample(sample: dict[str, Any], url: str, codebook_size: int | None = None,
                  frame_tokens: int | None = None) -> dict[str, Any]:
    """A raw per-sample shard sample -> {"key", "tokens", "length", "label", "shape", "info"}; a ValueError names
    the shard, the key and what is wrong (missing or undecodable tokens.npy, ids outside the codebook, a shape
    that is not the model's, bad json). `frame_tokens`: h*w of a grid video model, whose samples are (T', h*w)
    (returned flattened, time-major, with `shape` (T', h*w)); 1D samples have `shape` (K,). `info`: the json."""
    key = sample["__key__"]
    where = f"shard {url}, sample {key}"
    if "tokens.npy" not in sample:
        raise ValueError(f"{where}: no tokens.npy")
    try:
        arr = np.load(io.BytesIO(sample["tokens.npy"]), allow_pickle=False)
    except Exception as e:  # numpy: ValueError for pickled (object) data, others for garbage
        raise ValueError(f"{where}: tokens.npy is not a plain numpy array ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or not arr.size:
        raise ValueError(f"{where}: tokens.npy holds {arr.dtype} of shape {arr.shape}, expected integer ids of "
                         "shape (K,), or (T', h*w) for a grid video model")
    _check_shape(where, "tokens.npy", arr.shape, frame_tokens)
    grid = tuple(int(n) for n in arr.shape)
    flat = arr.astype(np.int64).reshape(-1)  # a grid clip: time-major, as the model reads it
    if codebook_size is not None and bool(((flat < 0) | (flat >= codebook_size)).any()):
        raise ValueError(f"{where}: {_outside(flat, codebook_size)}")
    info: dict[str, Any] = {}
    if "json" in sample:
        try:
            info = json.loads(sample["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{where}: json is not valid UTF-8 JSON ({e})") from None
        if not isinstance(info, dict):
            raise ValueError(f"{where}: json is not an object")
    label = _check_record(where, info, flat.size)
    return {"key": key, "tokens": torch.from_numpy(flat), "length": int(flat.size), "label": label, "shape": grid,
            "info": info}
