"""A content-keyed cache of VAE latents, so a latent-space flow decoder encodes each training image once.

FlexTok and SD3 pre-extract their VAE latents before training; our training batches come from the same
pipelines as the pixel decoder's (the encoder needs the pixels anyway), so instead of a separate extraction
step the cache sits behind `FrozenVAE.encode`: each image is keyed by a hash of its exact pixel values, hits
are read back, misses are encoded in one batch and stored. Deterministic data (a folder resized and centre
cropped) hits from the second epoch on; random crops or flips produce new pixels, hence misses, never a wrong
latent.

`where`: "memory" (a dict in this process) or a directory (one safetensors file per image, shared between
runs and processes). A directory records the VAE it was filled with (`cache.json`) and refuses another one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def image_key(image: torch.Tensor) -> str:
    """A hash of one CPU image's exact values, shape and dtype."""
    t = image.contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes of any dtype, bf16 included
    return h.hexdigest()


class LatentCache:
    def __init__(self, where: str | Path, identity: dict) -> None:
        """`identity`: what makes a latent (VAE path, scale, shift); a directory filled by another is refused.
        A directory is checked and created on first use, so loading an export for inference touches nothing."""
        self.memory: dict[str, torch.Tensor] | None = {} if str(where) == "memory" else None
        self.dir: Path | None = None if self.memory is not None else Path(where)
        self.identity = identity
        self.hits = self.misses = 0
        self._opened = self.memory is not None

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "cache.json"
        if meta.is_file():
            try:
                stored = json.loads(meta.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{meta}: not valid JSON ({e}); delete the cache directory to rebuild it") from e
            if stored != self.identity:
                raise ValueError(f"{meta}: this latent cache was filled with {stored}, not {self.identity}; point "
                                 "latent_cache to another directory or delete this one")
        else:
            meta.write_text(json.dumps(self.identity, indent=2))
        self._opened = True

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def _get(self, key: str) -> torch.Tensor | None:
        if self.memory is not None:
            return self.memory.get(key)
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["latent"]
        except Exception:  # a file cut short by a killed run: encode again and overwrite it
            return None

    def _put(self, key: str, latent: torch.Tensor) -> None:
        latent = latent.detach().cpu().contiguous()
        if self.memory is not None:
            self.memory[key] = latent
            return
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"latent": latent}, str(tmp))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none

    def __len__(self) -> int:
        if self.memory is not None:
            return len(self.memory)
        return sum(1 for _ in self.dir.glob("*/*.safetensors")) if self.dir.is_dir() else 0

    def encode(self, images: torch.Tensor, encode_fn) -> torch.Tensor:
        """images (B, 3, H, W) -> latents (B, C, h, w) on the images' device; only misses go to `encode_fn`."""
        if not self._opened:
            self._open()
        keys = [image_key(im) for im in images.detach().cpu()]  # one device-to-host copy per batch
        found = [self._get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = encode_fn(images[missing])  # (M, C, h, w)
            for j, i in enumerate(missing):
                found[i] = fresh[j]
                self._put(keys[i], fresh[j])
        return torch.stack([f.to(images.device) for f in found])
