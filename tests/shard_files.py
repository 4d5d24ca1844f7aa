"""Test helper: what a token shard holds on disk, per sample, whatever its format.

`shard_members(path)` gives {key: {"tokens.npy": bytes, "json": bytes}} for a per-sample shard (its members as
written) and for a packed one (each row of the packed member saved back as the .npy and json a per-sample shard
would hold: same dtype, same shape, same record), so tests can assert on the stored bytes of both formats.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from vistok.shards.packed import PACK_EXT, unpack


def shard_members(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            data = tar.extractfile(m).read()
            if ext != PACK_EXT:
                assert samples.setdefault(key, {}).get(ext) is None, f"{m.name} twice"
                samples[key][ext] = data
                continue
            block = unpack(data, str(path))
            for i, k in enumerate(block.keys):
                n = int(block.lengths[i])
                shape = block.shapes[i] if block.shapes is not None else (n,)
                buf = io.BytesIO()
                np.save(buf, block.tokens[i, :n].reshape(shape))
                assert k not in samples, f"{k} twice"
                samples[k] = {"tokens.npy": buf.getvalue(), "json": json.dumps(block.infos[i]).encode()}
    return samples


def member_count(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len(tar.getnames())
