"""Packed token shards: many samples in one tar member, so a shard costs about what its tokens cost.

A per-sample shard stores each sample as two tar members (`<key>.tokens.npy`, `<key>.json`): with tar's 512-byte
headers and padding, 64 tokens (128 bytes) take ~4 KB on disk and a reader pays per-member costs. A packed
shard `tokens-TTTTTT-PPP.tar` holds one member `tokens-TTTTTT-PPP.pack.npz` (a webdataset sample whose key is the
shard's stem), a numpy `.npz` (stored, no pickle) of:

    tokens   (n, L) uint16 | int32   row i holds sample i's ids in [:lengths[i]] (time-major for a grid clip),
                                     zeros after; L = the longest sample of the shard
    lengths  (n,) int32              ids per sample
    labels   (n,) int64              the sample's label, -1 when it has none
    meta     (m,) uint8              zlib-compressed UTF-8 JSON {"version": 1, "keys": [n keys],
                                     "info": [n records], "shapes": [n shapes] (only when a sample is 2-D)}

Each record is exactly the per-sample format's json (source, size, K, label, class, view, and a video's frames,
fps, kind, token_grid), and a 2-D sample (a grid clip (T', h*w)) keeps its shape in `shapes`, so both formats
read back to the same samples. Keys, sources and records repeat a lot and compress ~5-10x.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

PACK_EXT = "pack.npz"
VERSION = 1
META_BYTES_PER_SAMPLE = 1 << 16  # a reader refuses records longer than this on average (they are ~100 bytes)


def pack(keys: list[str], arrays: list[np.ndarray], infos: list[dict[str, Any]], dtype: np.dtype) -> bytes:
    """The member bytes of n samples (their ids as arrays of shape (K,) or (T', h*w), their json records)."""
    n = len(keys)
    lengths = np.array([a.size for a in arrays], dtype=np.int32)  # (n,)
    tokens = np.zeros((n, int(lengths.max()) if n else 0), dtype=dtype)  # (n, L)
    for i, a in enumerate(arrays):
        tokens[i, : a.size] = a.reshape(-1)
    labels = np.array([int(info.get("label", -1)) for info in infos], dtype=np.int64)  # (n,)
    meta: dict[str, Any] = {"version": VERSION, "keys": keys, "info": infos}
    if any(a.ndim != 1 for a in arrays):
        meta["shapes"] = [list(a.shape) for a in arrays]
    blob = zlib.compress(json.dumps(meta, separators=(",", ":")).encode(), 9)
    buf = io.BytesIO()
    np.savez(buf, tokens=tokens, lengths=lengths, labels=labels, meta=np.frombuffer(blob, dtype=np.uint8))
    return buf.getvalue()


@dataclass
class Pack:
    tokens: np.ndarray  # (n, L)
    lengths: np.ndarray  # (n,)
    labels: np.ndarray  # (n,)
    keys: list[str]
    infos: list[dict[str, Any]]
    shapes: list[tuple[int, ...]] | None

    def __len__(self) -> int:
        return len(self.keys)


def unpack(data: bytes, where: str) -> Pack:
    """A packed member's content, its structure checked (a ValueError naming `where` and what is wrong); the
    ids and records are checked sample by sample by the reader."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{where}: {PACK_EXT} {what}")

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in ("tokens", "lengths", "labels", "meta")}
    except KeyError as e:
        raise bad(f"has no {e.args[0]!r} array") from None
    except Exception as e:  # a zip that is not one, a pickled array, garbage
        raise bad(f"is not a plain numpy .npz ({type(e).__name__}: {e})") from None
    tokens, lengths, labels, blob = arrays["tokens"], arrays["lengths"], arrays["labels"], arrays["meta"]
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise bad(f"tokens is {tokens.dtype} of shape {tokens.shape}, expected integer ids (n, L)")
    n, width = tokens.shape
    for name, arr in (("lengths", lengths), ("labels", labels)):
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise bad(f"{name} is {arr.dtype} of shape {arr.shape}, expected ({n},) integers")
    if n and (int(lengths.min()) < 1 or int(lengths.max()) > width):
        raise bad(f"lengths lie in {int(lengths.min())}..{int(lengths.max())}, expected 1..{width}")
    limit = META_BYTES_PER_SAMPLE * max(n, 1)  # a hostile member cannot inflate to gigabytes
    try:
        inflate = zlib.decompressobj()
        text = inflate.decompress(blob.tobytes(), limit)
        if inflate.unconsumed_tail:
            raise bad(f"meta inflates to more than {limit} bytes ({META_BYTES_PER_SAMPLE} per sample)")
        meta = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"meta is not compressed UTF-8 JSON ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        raise bad(f"meta is not a version-{VERSION} record")
    keys, infos, shapes = meta.get("keys"), meta.get("info"), meta.get("shapes")
    if not isinstance(keys, list) or len(keys) != n or not all(isinstance(k, str) and k for k in keys):
        raise bad(f"meta holds no list of {n} keys")
    if not isinstance(infos, list) or len(infos) != n or not all(isinstance(i, dict) for i in infos):
        raise bad(f"meta holds no list of {n} records")
    if shapes is not None:
        if not isinstance(shapes, list) or len(shapes) != n or not all(
                isinstance(s, list) and s and all(isinstance(d, int) and d > 0 for d in s) for s in shapes):
            raise bad(f"meta's shapes is not a list of {n} shapes")
        shapes = [tuple(s) for s in shapes]
    return Pack(tokens, lengths, labels, keys, infos, shapes)
