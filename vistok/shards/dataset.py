"""Reading token shards back: `TokenDataset` (webdataset) and `collate_tokens` (padding + mask).

    ds = TokenDataset("out/")                 # a shard directory: only shards its manifest lists
    ds = TokenDataset("out/tokens-{000000..000009}-000.tar", shuffle=1000)
    loader = DataLoader(ds, batch_size=32, collate_fn=ds.collate, num_workers=2)
    for batch in loader: batch["tokens"] (B, L) int64, batch["mask"] (B, L) bool, batch["length"], batch["label"]

Samples are {"key", "tokens": (K,) int64, "length": K, "label": int (-1 when the input had none)}. Shards are
split by rank and by DataLoader worker, so under DDP each rank reads its own shards.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from vistok.shards.manifest import read_manifest


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
    of urls. `spec` is the tokenizer's tokens.json content when a manifest was given (vocab size, special
    ids), else None; `collate` pads with the `pad` special id when known (else `pad_id`).
    """

    def __init__(self, urls: str | Path | list[str], shuffle: int = 0, shard_shuffle: bool = False,
                 pad_id: int | None = None, seed: int = 0) -> None:
        self.spec: dict[str, Any] | None = None
        self.urls = self._resolve(urls)
        self.shuffle, self.shard_shuffle, self.seed = shuffle, shard_shuffle, seed
        if pad_id is None:
            pad_id = self.spec["special_tokens"]["pad"] if self.spec else 0
        self.pad_id = pad_id
        self.collate = functools.partial(collate_tokens, pad_id=pad_id)

    def _resolve(self, urls: str | Path | list[str]) -> list[str]:
        if isinstance(urls, (str, Path)) and (Path(urls).is_dir() or str(urls).endswith(".json")):
            doc = read_manifest(urls)
            root = Path(urls) if Path(urls).is_dir() else Path(urls).parent
            self.spec = doc["tokenizer"]["tokens"]
            found = [str(root / s["name"]) for s in doc["shards"]]
            if not found:
                raise ValueError(f"{urls}: the manifest lists no shards")
            return found
        from vistok.shards.inputs import expand_urls

        found = expand_urls([str(urls)] if isinstance(urls, (str, Path)) else [str(u) for u in urls])
        if not found:
            raise ValueError(f"no token shards in {urls!r}")
        return found

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        ds = wds.WebDataset(self.urls, shardshuffle=100 if self.shard_shuffle else False, seed=self.seed,
                            nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker, empty_check=False)
        if self.shuffle:
            ds = ds.shuffle(self.shuffle)
        yield from ds.map(_to_sample)


def _to_sample(sample: dict[str, Any]) -> dict[str, Any]:
    key = sample["__key__"]
    if "tokens.npy" not in sample:
        raise ValueError(f"sample {key} in {sample.get('__url__')} has no tokens.npy")
    ids = torch.from_numpy(np.load(io.BytesIO(sample["tokens.npy"]), allow_pickle=False).astype(np.int64))
    info = json.loads(sample["json"]) if "json" in sample else {}
    label = info.get("label")
    return {"key": key, "tokens": ids, "length": int(ids.numel()), "label": -1 if label is None else int(label)}
