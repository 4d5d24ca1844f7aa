"""The encode job: images in, webdataset token shards + manifest.json out (`vistok encode`).

Each sample is `__key__`, `tokens.npy` ((K,) uint16 when the codebook has <= 65536 codes, else int32) and
`json` ({"source", "size": [W, H] of the input, "label" when the input has one, "class" with
--labels-from-folders, "view" with --augment, "K"}). With --labels-from-folders, `labels.json` (class name ->
index) is written beside the shards and the mapping is in the manifest's job. Loading runs in
DataLoader workers (`InputStream`), encoding in the main process; a shard is written as `*.tar.partial`,
renamed to `*.tar` when closed, and its task is committed to the manifest after all its shards are renamed
(see `manifest.py` for resume). With `torch.distributed` initialised each rank encodes a contiguous block of
tasks (so a contiguous range of shard names) and rank 0 merges the manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import numbers
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vistok.data.images import AUGMENTS, IMAGE_EXTENSIONS, MAX_PIXELS
from vistok.devices import resolve_device
from vistok.shards.inputs import InputPlan, InputStream, plan_inputs
from vistok.shards.manifest import Manifest, sha256_file, write_json_atomic
from vistok.shards.verify import verify_shard

log = logging.getLogger("vistok.shards")
LABELS = "labels.json"  # class name -> label index, beside the shards (--labels-from-folders)
TAR_MTIME = 946684800.0  # fixed member times: the same samples give byte-identical shards


class EncodeError(RuntimeError):
    """A fatal problem with the job's inputs (under --strict) or settings."""


@dataclass
class EncodeSummary:
    inputs: int
    encoded: int
    skipped: int
    tokens: int
    bytes: int
    shards: int
    complete: bool
    encoded_now: int  # by this run (and this rank)
    seconds: float
    repaired: int = 0  # done tasks whose shards were missing or damaged, re-encoded by this run (and rank)

    @property
    def images_per_s(self) -> float:
        return self.encoded_now / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        state = "" if self.complete else " (incomplete: rerun the same command to finish)"
        if self.repaired:
            state += f"; {self.repaired} tasks with missing or damaged shards were re-encoded"
        return (f"{self.inputs} inputs: {self.encoded} encoded, {self.skipped} skipped, {self.tokens} tokens, "
                f"{self.bytes} bytes in {self.shards} shards; {self.encoded_now} encoded in this run at "
                f"{self.images_per_s:.1f} images/s{state}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


def shard_name(task: int, part: int) -> str:
    return f"tokens-{task:06d}-{part:03d}.tar"


def weights_fingerprint(tok: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(tok.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tokenizer_info(tok: Any, model_path: str | None) -> dict[str, Any]:
    from vistok.token_spec import token_spec

    cls = type(tok)
    return {"model": model_path, "class": f"{cls.__module__}.{cls.__qualname__}",
            "weights_sha256": weights_fingerprint(tok), "tokens": token_spec(tok)}


FORMATS = ("packed", "per-sample")


class TaskWriter:
    """The output shards of one task: `*.tar.partial` files renamed to `*.tar` once closed. `shard_format`:
    "per-sample" (members `<key>.tokens.npy` + `<key>.json` per sample) or "packed" (one member per shard,
    `vistok.shards.packed`)."""

    def __init__(self, output: Path, task: int, shard_size: int, dtype: np.dtype,
                 shard_format: str = "packed") -> None:
        self.output, self.task, self.shard_size, self.dtype = output, task, shard_size, dtype
        self.packed = shard_format == "packed"
        self.shards: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self._tar = None
        self._count = self._tokens = 0
        self._block: tuple[list[str], list[np.ndarray], list[dict[str, Any]]] = ([], [], [])

    def write(self, key: str, ids: torch.Tensor, meta: dict[str, Any]) -> None:
        import webdataset as wds

        if self._tar is None:
            self._path = self.output / shard_name(self.task, len(self.shards))
            self._tar = wds.TarWriter(str(self._path) + ".partial", encoder=False, mtime=TAR_MTIME)
        arr = ids.numpy().astype(self.dtype)
        info = {"source": meta["source"], "size": meta["size"], "K": int(ids.numel())}
        for field in ("label", "class", "view"):
            if field in meta:
                info[field] = meta[field]
        info.update(meta.get("clip", {}))  # a video: frames, fps, kind, token_grid
        if self.packed:
            for part, item in zip(self._block, (key, arr, info)):
                part.append(item)
        else:
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            self._tar.write({"__key__": key, "tokens.npy": buf.getvalue(), "json": json.dumps(info).encode()})
        self._count += 1
        self._tokens += int(ids.numel())
        if self._count == self.shard_size:
            self._close()

    def _close(self) -> None:
        if self.packed:
            from vistok.shards.packed import PACK_EXT, pack

            self._tar.write({"__key__": self._path.name.removesuffix(".tar"),
                             PACK_EXT: pack(*self._block, dtype=self.dtype)})
            self._block = ([], [], [])
        self._tar.close()
        partial = Path(str(self._path) + ".partial")
        entry = {"name": self._path.name, "task": self.task, "samples": self._count, "tokens": self._tokens,
                 "bytes": partial.stat().st_size, "sha256": sha256_file(partial)}
        os.replace(partial, self._path)
        self.shards.append(entry)
        self._tar, self._count, self._tokens = None, 0, 0

    def finish(self) -> None:
        if self._tar is not None:
            self._close()


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _load_model(model: Any, device: str | torch.device | None) -> tuple[Any, str | None]:
    from vistok.loading import load_tokenizer

    path = None
    if isinstance(model, (str, Path)):
        path = str(model)
        if not Path(model).exists():
            raise FileNotFoundError(f"model {model} not found (expected an export directory or a .ckpt file)")
        model = load_tokenizer(model)
    if getattr(model, "continuous", False):  # before any output is written
        raise ValueError(f"token shards need token ids; {path or 'this model'} has a continuous KL bottleneck "
                         f"({type(model.quantizer).__name__}) and gives latents, not ids "
                         "(Tokenizer.encode_latents)")
    return model.to(resolve_device(device)).eval(), path


def encode_to_shards(
    model: Any,
    inputs: list[str] | str,
    output: str | Path,
    num_tokens: int | None = None,
    target_psnr: float | None = None,
    batch_size: int = 64,
    shard_size: int = 1000,
    workers: int = 2,
    device: str | None = None,
    strict: bool = False,
    progress: bool = True,
    max_pixels: int | None = MAX_PIXELS,
    labels_from_folders: bool = False,
    augment: str = "none",
    fps: float | None = None,
    max_frames: int | None = None,
    chunk: int | None = None,
    shard_format: str = "packed",
) -> EncodeSummary:
    """Encode an image folder or webdataset shards into token shards under `output` (resumable).

    `model` is a Tokenizer, an export directory or a .ckpt. Every check on the model and the settings runs
    before any input is read or any file written. A rerun verifies the shards of every finished task and
    re-encodes the tasks whose shards are missing or damaged. `labels_from_folders`: each image of a folder gets
    the index of its class subfolder (`labels.json` beside the shards); `augment`: "none", "flip" or "tencrop"
    (`vistok.data.images.augmented_views`), each view its own sample and key.

    A video model (its input spec's frames rule is not "1") encodes video files (and images, as one-frame
    videos; `vistok.data.model_clips`): `fps` (None: each file's own rate), `max_frames` (read at most this many
    frames of a file), `chunk` (encode a grid model's clip `chunk` latent frames at a time: bounded memory, the
    same ids). Its samples' tokens.npy is (T', h*w) for a grid model, (K,) for a 1D one, and the json adds
    frames, source_frames, fps, kind ("video" | "image") and token_grid.

    `shard_format`: "packed" (default: one member per shard, `vistok.shards.packed`) or "per-sample" (two tar
    members per sample). One job holds `output` at a time (`vistok.shards.lock`): a second is refused, naming
    the holder.
    """
    check_settings(num_tokens, target_psnr, batch_size, shard_size, workers, device, max_pixels)
    if shard_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {shard_format!r}")
    if augment not in AUGMENTS:
        raise ValueError(f"--augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    tok, model_path = _load_model(model, device)
    if num_tokens is not None and not 1 <= num_tokens <= tok.max_tokens:
        raise ValueError(f"--num-tokens {num_tokens} does not fit the model {model_path or type(tok).__name__}: "
                         f"it has 1..{tok.max_tokens} tokens")
    k = tok.max_tokens if num_tokens is None and target_psnr is None else num_tokens
    video = None
    if tok.input_spec.is_video:
        from vistok.data.video_io import VIDEO_EXTENSIONS
        from vistok.shards.inputs import VideoSettings

        if target_psnr is not None:
            raise ValueError("--target-psnr is for image models; this model encodes videos")
        if chunk is not None and tok.frame_tokens is None:
            raise ValueError("--chunk is for space-time grid video models; this one gives 1D tokens")
        video = VideoSettings(tok.input_spec, fps, max_frames)
        if tok.frame_tokens is not None and num_tokens is None:
            k = None  # every latent frame of each clip
        plan = plan_inputs(inputs, shard_size, labels_from_folders, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    else:
        plan = plan_inputs(inputs, shard_size, labels_from_folders)

    rank, world = _dist_info()
    output = Path(output)
    with _output_lock(output, rank, world):  # one job per directory, before anything in it is read or removed
        output.mkdir(parents=True, exist_ok=True)
        job = {**plan.job_info(), "num_tokens": k, "target_psnr": target_psnr, "shard_size": shard_size}
        if shard_format != "per-sample":  # only when packed: manifests written before packing stay resumable
            job["shard_format"] = shard_format
        if video is not None:  # only for video models: image manifests stay as they were
            job.update({"fps": fps, "max_frames": max_frames})
        if augment != "none":  # only when used: manifests written without it stay resumable
            job["augment"] = augment
        manifest = Manifest(output, tokenizer_info(tok, model_path), job, rank, world)
        block = _block(len(plan.tasks), rank, world)
        manifest.adopt(block)
        repaired = 0
        for t in block:  # a listed shard that is missing, cut or altered, or a shard file it does not list: redo
            if manifest.done(t):
                problems = [p for s in manifest.tasks[t]["shards"] for p in verify_shard(output / s["name"], s)]
                listed = {s["name"] for s in manifest.tasks[t]["shards"]}
                problems += [f"{f.name}: on disk but not listed in the manifest" for f in
                             sorted(output.glob(f"tokens-{t:06d}-*.tar")) if f.name not in listed]
                if problems:
                    log.warning("re-encoding task %d: %s", t, "; ".join(problems))
                    manifest.forget(t)
                    repaired += 1
        pending = [t for t in block if not manifest.done(t)]
        for t in pending:  # leftovers of a killed run: partial or renamed-but-uncommitted shards
            for f in output.glob(f"tokens-{t:06d}-*"):
                f.unlink()

        start = time.perf_counter()
        encoded_now = _run(tok, plan, pending, output, manifest, k, target_psnr, batch_size, shard_size, workers,
                           strict, progress and rank == 0, max_pixels, augment, video, chunk, shard_format)
        seconds = time.perf_counter() - start

        if plan.labels is not None and rank == 0:
            write_json_atomic(output / LABELS, plan.labels)
        if world > 1:
            dist.barrier()
        doc = manifest.to_json()
        if rank == 0:
            manifest.reload()
            doc = manifest.finalize(len(plan.tasks))
        if world > 1:
            dist.barrier()
        tot = doc["totals"]
        summary = EncodeSummary(tot["inputs"], tot["encoded"], tot["skipped"], tot["tokens"], tot["bytes"],
                                tot["shards"], bool(doc["complete"]), encoded_now, seconds, repaired)
        return summary


@contextlib.contextmanager
def _output_lock(output: Path, rank: int, world: int) -> Iterator[None]:
    """Rank 0 holds the output directory's lock (`vistok.shards.lock`) for the job; in a distributed job every
    rank learns whether it got it, so that all ranks stop together when another job holds it."""
    from vistok.shards.lock import DirectoryBusy, DirectoryLock

    lock, error = None, None
    if rank == 0:
        try:
            lock = DirectoryLock(output, "vistok encode").acquire()
        except DirectoryBusy as e:
            error = str(e)
    if world > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise DirectoryBusy(error)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def check_settings(num_tokens: Any, target_psnr: Any, batch_size: Any, shard_size: Any, workers: Any,
                   device: Any = None, max_pixels: Any = None) -> None:
    """Every encode setting that can be checked without the model, before any work (ValueError)."""
    def integer(name: str, value: Any, low: int, none_ok: bool = False) -> None:
        if value is None and none_ok:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    integer("--num-tokens", num_tokens, 1, none_ok=True)
    if target_psnr is not None and (isinstance(target_psnr, bool) or not isinstance(target_psnr, numbers.Real)
                                    or not math.isfinite(target_psnr) or target_psnr <= 0):
        raise ValueError(f"--target-psnr must be a finite number of dB > 0, got {target_psnr!r}")
    if num_tokens is not None and target_psnr is not None:
        raise ValueError("give either num_tokens or target_psnr, not both")
    integer("--batch-size", batch_size, 1)
    integer("--shard-size", shard_size, 1)
    integer("--workers", workers, 0)
    integer("--max-pixels", max_pixels, 1, none_ok=True)
    resolve_device(device)  # "auto"/None, or a device this machine has


def _block(num_tasks: int, rank: int, world: int) -> list[int]:
    return list(range(num_tasks * rank // world, num_tasks * (rank + 1) // world))


def _run(tok: Any, plan: InputPlan, pending: list[int], output: Path, manifest: Manifest, k: int | None,
         target_psnr: float | None, batch_size: int, shard_size: int, workers: int, strict: bool,
         show: bool, max_pixels: int | None = MAX_PIXELS, augment: str = "none", video: Any = None,
         chunk: int | None = None, shard_format: str = "packed") -> int:
    from tqdm import tqdm

    encode_chunk = chunk  # `chunk` below is the loader's unit of work
    if not pending:
        return 0
    dtype = np.dtype(np.uint16 if tok.codebook_size <= 65536 else np.int32)
    stream = InputStream(plan, pending, tok.input_spec.side, batch_size, max_pixels, augment, video)
    workers = min(workers, len(pending))
    loader = DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None,
                        pin_memory=tok.device.type == "cuda")
    total = None if plan.num_inputs is None else sum(len(plan.tasks[t].items) + len(plan.tasks[t].skipped)
                                                     for t in pending)
    bar = tqdm(total=total, unit="img", desc="encode", disable=not show, dynamic_ncols=True)
    open_tasks: dict[int, TaskWriter] = {}
    encoded = 0

    def writer(t: int) -> TaskWriter:
        if t not in open_tasks:
            open_tasks[t] = TaskWriter(output, t, shard_size, dtype, shard_format)
        return open_tasks[t]

    try:
        for chunk in loader:
            for s in chunk["skipped"]:
                if strict:
                    raise EncodeError(f"{s['source']}: {s['reason']} (--strict)")
                log.warning("skipping %s: %s", s["source"], s["reason"])
                writer(s["task"]).skipped.append(s)
            if chunk["images"] is not None and video is not None:  # one clip (1, 3, T, S, S)
                x = chunk["images"].to(tok.device, non_blocking=True)
                seq = tok.encode(x, num_tokens=k, chunk=encode_chunk)[0].cpu()  # (K,), time-major for a grid
                grid = None
                if tok.frame_tokens is not None:
                    seq = seq.reshape(-1, tok.frame_tokens)  # (T', h*w)
                    grid = [seq.shape[0], *tok.token_grid()[1:]]
                meta = chunk["meta"][0]
                meta["clip"]["token_grid"] = grid or [int(seq.numel())]
                writer(meta["task"]).write(meta["key"], seq, meta)
                encoded += 1
            elif chunk["images"] is not None:
                x = chunk["images"].to(tok.device, non_blocking=True)
                if target_psnr is None:
                    ids = list(tok.encode(x, num_tokens=k).cpu())  # (B, K) -> B x (K,)
                else:
                    ids = [t.cpu() for t in tok.encode_adaptive(x, target_psnr=target_psnr)]
                for meta, seq in zip(chunk["meta"], ids):
                    writer(meta["task"]).write(meta["key"], seq, meta)
                encoded += len(ids)
            bar.update(len(chunk["meta"]) + len(chunk["skipped"]))
            for end in chunk["ends"]:
                w = writer(end["task"])
                w.finish()
                manifest.commit(end["task"], w.shards, w.skipped)
                del open_tasks[end["task"]]
    finally:
        bar.close()
    return encoded
