"""What an encode job reads: the input plan (tasks) and a loader stream that overlaps decoding with compute.

The inputs are split into *tasks*, the unit of resumption and of distribution:
- an image folder (recursive, sorted): consecutive runs of `shard_size` files, one output shard each;
- webdataset input (urls, brace patterns and `::` lists expanded): one input shard per task, written to as
  many output shards of at most `shard_size` samples as it needs.
Task t always writes the output shards `tokens-{t:06d}-{part:03d}.tar`, so a rank that owns a contiguous
block of tasks owns a contiguous range of shard names, and a rerun rewrites exactly the unfinished tasks.

`InputStream` runs in DataLoader workers: it decodes and crops images, stacks up to `batch_size` of them
into a chunk, and reports unreadable inputs and finished tasks in the same ordered stream, so the main
process only encodes and writes. Folder labels are not inferred (an image folder has no labels); webdataset
samples carry `cls`/`label` when present.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from vistok.data.images import IMAGE_EXTENSIONS, list_images, load_rgb, pil_to_tensor, resize_crop, to_rgb

WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp")


@dataclass(frozen=True)
class Task:
    index: int
    items: tuple[tuple[str, str], ...]  # folder: (relative path, output key); webdataset: ((url, ""),)


@dataclass
class InputPlan:
    kind: str  # "folder" | "webdataset"
    root: str | None  # the folder, for kind == "folder"
    sources: list[str]  # what the user passed, expanded (folder path, or every url)
    tasks: list[Task]
    num_inputs: int | None  # known up front for a folder only
    fingerprint: str  # sha256 of the ordered input names: a rerun must see the same inputs

    def job_info(self) -> dict[str, Any]:
        return {"input_kind": self.kind, "inputs": self.sources, "num_inputs": self.num_inputs,
                "inputs_sha256": self.fingerprint, "tasks": len(self.tasks)}


def output_key(name: str) -> str:
    """A webdataset-safe key: the extension is dropped and other dots become '_' (webdataset splits a
    member name at the first dot of its base name)."""
    stem = name.rsplit(".", 1)[0] if "." in Path(name).name else name
    return stem.replace(".", "_")


def expand_urls(inputs: list[str]) -> list[str]:
    from webdataset.shardlists import expand_urls as wds_expand

    urls: list[str] = []
    for spec in inputs:
        urls += list(wds_expand(spec))
    return urls


def plan_inputs(inputs: list[str] | str, shard_size: int) -> InputPlan:
    """List the inputs and cut them into tasks; raises FileNotFoundError naming a missing folder/shard."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    if not inputs:
        raise ValueError("no input given")
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        root = Path(inputs[0])
        files = [str(p.relative_to(root)) for p in list_images(root)]
        keys = [output_key(f) for f in files]
        seen: dict[str, int] = {}
        for k in keys:
            seen[k] = seen.get(k, 0) + 1
        keys = [k if seen[k] == 1 else f"{k}_{Path(f).suffix.lstrip('.').lower()}" for k, f in zip(keys, files)]
        pairs = list(zip(files, keys))
        tasks = [Task(t, tuple(pairs[i:i + shard_size])) for t, i in enumerate(range(0, len(pairs), shard_size))]
        digest = hashlib.sha256("\n".join(files).encode()).hexdigest()
        return InputPlan("folder", str(root.resolve()), [str(root.resolve())], tasks, len(files), digest)
    urls = expand_urls(inputs)
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    if urls and len(local) == len(urls) and not any(os.path.exists(u) for u in local):
        raise FileNotFoundError(f"input {' '.join(inputs)} is neither an image folder nor existing webdataset "
                                f"shards (first: {urls[0]})")
    if not urls:
        raise FileNotFoundError(f"input {' '.join(inputs)} names no webdataset shards")
    urls = [str(Path(u).resolve()) if u in local and os.path.exists(u) else u for u in urls]
    tasks = [Task(t, ((u, ""),)) for t, u in enumerate(urls)]
    digest = hashlib.sha256("\n".join(urls).encode()).hexdigest()
    return InputPlan("webdataset", None, urls, tasks, None, digest)


def _wds_samples(url: str) -> Iterator[dict[str, Any]]:
    """Samples of one input shard, in order (members grouped by key as webdataset does); raises, after
    yielding the complete samples, when the shard is unreadable or truncated. Python's tarfile ends a stream
    silently at a cut header, so the end-of-archive marker (two zero blocks) is checked here."""
    import tarfile

    from webdataset.gopen import gopen
    from webdataset.tariterators import base_plus_ext

    stream = gopen(url, "rb")
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
        current: dict[str, Any] | None = None
        for member in tar:
            prefix, suffix = base_plus_ext(member.name)
            if not member.isreg() or prefix is None or prefix.startswith("__"):
                continue
            data = tar.extractfile(member).read()
            if current is not None and current["__key__"] != prefix:
                yield current
                current = None
            current = current or {"__key__": prefix}
            current[suffix.lower()] = data
        if tar.fileobj.tell() - tar.offset != tarfile.BLOCKSIZE or tar.fileobj.read(tarfile.BLOCKSIZE).strip(b"\0"):
            raise tarfile.ReadError(f"truncated: no end-of-archive marker after byte {tar.offset}")
        if current is not None:
            yield current
    finally:
        stream.close()


class InputStream(IterableDataset):
    """Chunks {"images": (n, 3, S, S) | None, "meta": [n dicts], "skipped": [...], "ends": [...]}.

    meta: {"task", "key", "source", "size": [W, H] before cropping, "label"?}; skipped: {"task", "source",
    "reason"}; ends: {"task"} once every input of that task is in this or an earlier chunk. Each worker takes
    every num_workers-th task, so a task's records stay in order within one worker's stream.
    """

    def __init__(self, plan: InputPlan, tasks: list[int], image_size: int, batch_size: int) -> None:
        self.plan, self.tasks, self.image_size, self.batch_size = plan, tasks, image_size, batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.tasks if info is None else self.tasks[info.id::info.num_workers]
        images: list[torch.Tensor] = []
        chunk = self._empty()
        for t in mine:
            for image, record in self._task_records(self.plan.tasks[t]):
                if image is None:
                    chunk["skipped"].append(record)
                    continue
                images.append(image)
                chunk["meta"].append(record)
                if len(images) == self.batch_size:
                    chunk["images"] = torch.stack(images)
                    yield chunk
                    images, chunk = [], self._empty()
            chunk["ends"].append({"task": t})
        if images or chunk["skipped"] or chunk["ends"]:
            chunk["images"] = torch.stack(images) if images else None
            yield chunk

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"images": None, "meta": [], "skipped": [], "ends": []}

    def _task_records(self, task: Task) -> Iterator[tuple[torch.Tensor | None, dict[str, Any]]]:
        if self.plan.kind == "folder":
            for rel, key in task.items:
                try:
                    img = load_rgb(Path(self.plan.root) / rel)
                except OSError as e:
                    yield None, {"task": task.index, "source": rel, "reason": str(e)}
                    continue
                yield self._crop(img), {"task": task.index, "key": key, "source": rel, "size": list(img.size)}
            return
        url = task.items[0][0]
        try:
            for sample in _wds_samples(url):
                yield self._wds_record(task.index, url, sample)
        except Exception as e:  # truncated / unreadable / missing shard: report it by name, go on
            yield None, {"task": task.index, "source": url,
                         "reason": f"unreadable input shard ({type(e).__name__}: {e})"}

    def _wds_record(self, t: int, url: str, sample: dict[str, Any]) -> tuple[torch.Tensor | None, dict[str, Any]]:
        key = sample["__key__"]
        source = f"{url}#{key}"
        ext = next((k for k in WDS_IMAGE_KEYS if k in sample), None)
        if ext is None:
            return None, {"task": t, "source": source, "reason": f"no image ({'/'.join(WDS_IMAGE_KEYS)}) in sample"}
        try:
            with Image.open(io.BytesIO(sample[ext])) as img:
                img.load()
                img = to_rgb(img)
        except Exception as e:
            return None, {"task": t, "source": source, "reason": f"cannot read image {key}.{ext}: {e}"}
        record: dict[str, Any] = {"task": t, "key": output_key(key), "source": source, "size": list(img.size)}
        for k in ("cls", "label"):
            if k in sample:
                try:
                    record["label"] = int(sample[k].decode().strip())
                except ValueError:
                    pass
                break
        return self._crop(img), record

    def _crop(self, img: Image.Image) -> torch.Tensor:
        return pil_to_tensor(resize_crop(img, self.image_size))  # (3, S, S) in [-1, 1]


__all__ = ["IMAGE_EXTENSIONS", "InputPlan", "InputStream", "Task", "output_key", "plan_inputs"]
