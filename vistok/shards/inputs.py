"""What an encode job reads: the input plan (tasks) and a loader stream that overlaps decoding with compute.

The inputs are split into *tasks*, the unit of resumption and of distribution:
- an image folder (recursive, sorted): consecutive runs of `shard_size` files, one output shard each;
- webdataset input (urls, brace patterns and `::` lists expanded): one input shard per task, written to as
  many output shards of at most `shard_size` samples as it needs.
Task t always writes the output shards `tokens-{t:06d}-{part:03d}.tar`, so a rank that owns a contiguous
block of tasks owns a contiguous range of shard names, and a rerun rewrites exactly the unfinished tasks.
The j-th input of task t gets the key `{t:06d}_{j:06d}_<tail of its name>` (`sample_key`): unique per job by
construction, whatever the file names; the sample's json keeps the source path. Folder entries the listing
cannot read (see `scan_images`) are reported with task 0.

`InputStream` runs in DataLoader workers: it decodes and crops images, stacks up to `batch_size` of them
into a chunk, and reports unreadable inputs and finished tasks in the same ordered stream, so the main
process only encodes and writes. Webdataset samples carry `cls`/`label` when present; an image folder's labels
come from its class subfolders only when asked (`labels_from_folders`: `root/cat/x.png` gets the index of "cat"
among the sorted subfolder names). With an augmentation (`augment="flip"` or `"tencrop"`, see
`augmented_views`) every input gives several views, each with its own key (the input's key + `_<view>`) and
its view name in the record.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from vistok.data.images import (
    AUGMENTS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    augmented_views,
    load_rgb,
    no_images_error,
    pil_to_tensor,
    scan_images,
)
from vistok.data.model_clips import ModelClip, clip_record, load_model_clip
from vistok.data.videos import WDS_VIDEO_KEYS
from vistok.data.webdataset_sample import WDS_IMAGE_KEYS, decode_sample, sample_label
from vistok.input_spec import InputSpec

KEY_SCHEME = "task_index_name/1"  # recorded in the job: a rerun never mixes two key schemes


@dataclass(frozen=True)
class Task:
    index: int
    items: tuple[tuple[str, str], ...]  # folder: (relative path, output key); webdataset: ((url, ""),)
    skipped: tuple[tuple[str, str], ...] = ()  # folder entries the listing could not read: (path, reason)


@dataclass
class InputPlan:
    kind: str  # "folder" | "webdataset"
    root: str | None  # the folder, for kind == "folder"
    sources: list[str]  # what the user passed, expanded (folder path, or every url)
    tasks: list[Task]
    num_inputs: int | None  # known up front for a folder only
    fingerprint: str  # sha256 of the ordered input names: a rerun must see the same inputs
    labels: dict[str, int] | None = None  # class folder name -> label index (labels_from_folders)

    def job_info(self) -> dict[str, Any]:
        info = {"input_kind": self.kind, "inputs": self.sources, "num_inputs": self.num_inputs,
                "inputs_sha256": self.fingerprint, "tasks": len(self.tasks), "keys": KEY_SCHEME}
        if self.labels is not None:  # only when used: manifests written without labels stay resumable
            info["labels"] = self.labels
        return info

    def label(self, rel: str) -> tuple[str, int] | None:
        """(class name, index) of a folder input's relative path, when labels come from folders."""
        if self.labels is None:
            return None
        name = Path(rel).parts[0]
        return name, self.labels[name]


def sample_key(task: int, index: int, name: str) -> str:
    """The output key of the index-th input of a task: unique per job by construction (task and index), with
    the tail of the source name for a reader's eye. Webdataset splits a member name at the first dot of its
    base name, so the name part keeps only letters, digits, '-' and '_'; the sample's json keeps the exact
    source path."""
    tail = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[-48:].lstrip("_")
    return f"{task:06d}_{index:06d}" + (f"_{tail}" if tail else "")


def expand_urls(inputs: list[str]) -> list[str]:
    from webdataset.shardlists import expand_urls as wds_expand

    urls: list[str] = []
    for spec in inputs:
        urls += list(wds_expand(spec))
    return urls


def folder_labels(root: Path, files: list[str]) -> dict[str, int]:
    """Class name -> index from the first path component of each image (sorted names, as torchvision's
    ImageFolder); a ValueError when an image lies directly in `root`, outside any class folder."""
    loose = [f for f in files if len(Path(f).parts) < 2]
    if loose:
        raise ValueError(f"--labels-from-folders: {len(loose)} images lie directly in {root}, outside any class "
                         f"folder (first: {loose[0]}); put each image under root/<class>/")
    return {name: i for i, name in enumerate(sorted({Path(f).parts[0] for f in files}))}


def plan_inputs(inputs: list[str] | str, shard_size: int, labels_from_folders: bool = False,
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> InputPlan:
    """List the inputs and cut them into tasks; raises FileNotFoundError naming a missing folder/shard.
    `extensions`: the files a folder input lists (a video model's job lists videos and images)."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    if not inputs:
        raise ValueError("no input given")
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        root = Path(inputs[0])
        listing = scan_images(root, extensions)
        if not listing.files:
            raise no_images_error(listing)
        files = [str(p.relative_to(root)) for p in listing.files]
        tasks = []
        for t, i in enumerate(range(0, len(files), shard_size)):
            items = tuple((f, sample_key(t, j, f)) for j, f in enumerate(files[i:i + shard_size]))
            # entries the listing could not read are reported with task 0 (redone with it)
            tasks.append(Task(t, items, tuple(listing.skipped) if t == 0 else ()))
        digest = hashlib.sha256("\n".join(files).encode()).hexdigest()
        labels = folder_labels(root, files) if labels_from_folders else None
        return InputPlan("folder", str(root.resolve()), [str(root.resolve())], tasks, len(files), digest, labels)
    if labels_from_folders:
        raise ValueError("--labels-from-folders needs an image folder as --input (webdataset samples carry their "
                         "own cls/label)")
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
    """Samples of one input shard, in order; raises, after yielding the complete samples, when the shard is
    unreadable or truncated."""
    from webdataset.gopen import gopen

    stream = gopen(url, "rb")
    try:
        yield from tar_samples(stream)
    finally:
        stream.close()


def tar_samples(fileobj: Any) -> Iterator[dict[str, Any]]:
    """Samples {"__key__", ext: bytes} of a webdataset tar stream, members grouped by key as webdataset does.
    Raises (after yielding the complete samples) when the stream is not a tar, is truncated, or repeats a
    member within a sample. Python's tarfile ends a stream silently at a cut header, so the end-of-archive
    marker (two zero blocks) is checked here."""
    import tarfile

    from webdataset.tariterators import base_plus_ext

    tar = tarfile.open(fileobj=fileobj, mode="r|*")
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
        if suffix.lower() in current:
            raise ValueError(f"member {member.name} appears twice in one sample")
        current[suffix.lower()] = data
    if tar.fileobj.tell() - tar.offset != tarfile.BLOCKSIZE or tar.fileobj.read(tarfile.BLOCKSIZE).strip(b"\0"):
        raise tarfile.ReadError(f"truncated: no end-of-archive marker after byte {tar.offset}")
    if current is not None:
        yield current


@dataclass(frozen=True)
class VideoSettings:
    """How a video model's job reads its inputs (`vistok.data.model_clips`): the model's input spec, the frame
    rate (None: each file's own) and the most frames read from one file."""

    spec: InputSpec
    fps: float | None = None
    max_frames: int | None = None

    def clip(self, source: Any, name: str, max_pixels: int | None) -> ModelClip | str:
        """The clip of a file path or member bytes, or the reason it cannot be read."""
        try:
            return load_model_clip(source, self.spec, self.fps, self.max_frames, name, max_pixels)
        except OSError as e:
            return str(e)


class InputStream(IterableDataset):
    """Chunks {"images": (n, 3, S, S) | None, "meta": [n dicts], "skipped": [...], "ends": [...]}.

    With `video` (a video model's job) every chunk holds one clip, "images" (1, 3, T, S, S), and its meta a
    "clip" record (frames, fps, ...: `vistok.data.model_clips.clip_record`).
    meta: {"task", "key", "source", "size": [W, H] before cropping, "label"?, "class"?, "view"?}; skipped:
    {"task", "source", "reason"}; ends: {"task"} once every input of that task is in this or an earlier chunk.
    Each worker takes every num_workers-th task, so a task's records stay in order within one worker's stream.
    """

    def __init__(self, plan: InputPlan, tasks: list[int], image_size: int, batch_size: int,
                 max_pixels: int | None = MAX_PIXELS, augment: str = "none",
                 video: VideoSettings | None = None) -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
        if video is not None and augment != "none":
            raise ValueError("--augment is for image models; a video model's inputs are encoded as they are")
        self.plan, self.tasks, self.image_size, self.batch_size = plan, tasks, image_size, batch_size
        self.max_pixels, self.augment, self.video = max_pixels, augment, video

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.tasks if info is None else self.tasks[info.id::info.num_workers]
        images: list[torch.Tensor] = []
        chunk = self._empty()
        for t in mine:
            for img, record in self._task_records(self.plan.tasks[t]):
                if img is None:
                    chunk["skipped"].append(record)
                    continue
                if self.video is not None:  # clips differ in length: one clip per chunk, (1, 3, T, S, S)
                    clip = self.video.clip(img, record["source"], self.max_pixels)
                    if isinstance(clip, str):
                        chunk["skipped"].append({"task": record["task"], "source": record["source"], "reason": clip})
                        continue
                    chunk["images"] = clip.video[None]
                    chunk["meta"].append({**record, "size": clip.size, "clip": clip_record(clip, None)})
                    yield chunk
                    chunk = self._empty()
                    continue
                for view, image in self._views(img):
                    meta = record if view is None else {**record, "key": f"{record['key']}_{view}", "view": view}
                    images.append(image)
                    chunk["meta"].append(meta)
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

    def _task_records(self, task: Task) -> Iterator[tuple[Image.Image | None, dict[str, Any]]]:
        if self.plan.kind == "folder":
            for rel, reason in task.skipped:
                yield None, {"task": task.index, "source": rel, "reason": reason}
            for rel, key in task.items:
                try:
                    img = (Path(self.plan.root) / rel if self.video is not None
                           else load_rgb(Path(self.plan.root) / rel, self.max_pixels))
                except OSError as e:
                    yield None, {"task": task.index, "source": rel, "reason": str(e)}
                    continue
                record = {"task": task.index, "key": key, "source": rel,
                          "size": list(img.size) if self.video is None else None}
                label = self.plan.label(rel)
                if label is not None:
                    record["class"], record["label"] = label
                yield img, record
            return
        url = task.items[0][0]
        try:
            for j, sample in enumerate(_wds_samples(url)):
                yield self._wds_record(task.index, j, url, sample)
        except Exception as e:  # truncated / unreadable / missing shard: report it by name, go on
            yield None, {"task": task.index, "source": url,
                         "reason": f"unreadable input shard ({type(e).__name__}: {e})"}

    def _wds_record(self, t: int, j: int, url: str,
                    sample: dict[str, Any]) -> tuple[Image.Image | None, dict[str, Any]]:
        key = sample["__key__"]
        source = f"{url}#{key}"
        if self.video is not None:  # the clip is decoded from the member's bytes in __iter__
            data = next((sample[k] for k in WDS_VIDEO_KEYS + WDS_IMAGE_KEYS if k in sample), None)
            if data is None:
                return None, {"task": t, "source": source, "reason": f"no video or image member in sample {key}"}
            record = {"task": t, "key": sample_key(t, j, key), "source": source, "size": None}
            label = sample_label(sample)
            if label is not None:
                record["label"] = label
            return data, record
        try:
            img, label = decode_sample(sample, self.max_pixels)
        except ValueError as e:
            return None, {"task": t, "source": source, "reason": str(e)}
        record: dict[str, Any] = {"task": t, "key": sample_key(t, j, key), "source": source,
                                  "size": list(img.size)}
        if label is not None:
            record["label"] = label
        return img, record

    def _views(self, img: Image.Image) -> list[tuple[str | None, torch.Tensor]]:
        """(view name, (3, S, S) in [-1, 1]); one unnamed centre crop without augmentation."""
        return [(view, pil_to_tensor(crop)) for view, crop in augmented_views(img, self.image_size, self.augment)]


__all__ = ["IMAGE_EXTENSIONS", "InputPlan", "InputStream", "Task", "folder_labels", "plan_inputs", "sample_key",
           "tar_samples"]
