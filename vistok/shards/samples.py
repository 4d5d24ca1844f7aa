"""One shard's samples, in either format: per-sample members (`<key>.tokens.npy` + `<key>.json`) or packed
(`vistok.shards.packed`), each decoded and checked the same way: ids inside the codebook (named by shard and
key), the model's shape ((K,), or (T', h*w) for a grid video model), the json record against the ids, a label
that is an integer. `TokenDataset`, `vistok verify` and the memmap export all read shards through
`ShardSamples`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from vistok.shards.packed import PACK_EXT, Pack, unpack


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
