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
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from vistok.shards.manifest import MANIFEST, manifest_problems, read_manifest
from vistok.shards.samples import ShardSamples, decode_sample, frame_tokens_of

__all__ = ["ShardError", "TokenDataset", "collate_tokens", "decode_sample"]

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
