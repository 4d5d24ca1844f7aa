"""Tokens back to images: `vistok decode` (token shards or a .npy -> PNGs) and `vistok reconstruct` (an image
folder -> encode -> decode -> PNGs and PSNR).

    vistok decode --model DIR --input SHARDS_DIR_OR_URLS_OR_NPY --output PNG_DIR [--num-tokens K]
    vistok reconstruct --model DIR --input IMAGE_FOLDER --output PNG_DIR [--num-tokens K]

Token shards are read with `vistok.shards.TokenDataset` (hash and count checks against the manifest, every id
against the model's codebook); a .npy holds one sequence (K,) or a batch (B, K) of integer ids. Each sample
becomes `<key>.png` (a .npy's samples are `<stem>` or `<stem>_<row>`); `--num-tokens K` decodes the first K
tokens of each sequence (a shorter sequence is decoded whole). The output directory must be new or empty
unless `--overwrite`, so no earlier PNG is replaced silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistok.data.images import tensor_to_uint8


def _output_dir(path: str | Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"--output {path} is not empty; choose another directory or pass --overwrite to "
                              "write into it (files of the same name are replaced)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_png(image: torch.Tensor, path: Path) -> None:
    """(3, H, W) in [-1, 1] -> an 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tensor_to_uint8(image)).save(path, format="PNG")


def npy_sequences(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, 1-D int64 ids) of a .npy of shape (K,) or (B, K); never unpickles."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a plain numpy .npy file ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or not arr.size:
        raise ValueError(f"{path}: expected integer token ids of shape (K,) or (B, K), got {arr.dtype} of shape "
                         f"{arr.shape}")
    if arr.ndim == 1:
        yield path.stem, torch.from_numpy(arr.astype(np.int64))
        return
    for i, row in enumerate(arr):
        yield f"{path.stem}_{i:06d}", torch.from_numpy(row.astype(np.int64))


def token_sequences(inputs: list[str], codebook_size: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, ids) from .npy files or token shards (a shard directory, a manifest, urls or brace patterns)."""
    if all(str(i).endswith(".npy") for i in inputs):
        for i in inputs:
            if not Path(i).is_file():
                raise FileNotFoundError(f"--input {i}: file not found")
            yield from npy_sequences(i)
        return
    if any(str(i).endswith(".npy") for i in inputs):
        raise ValueError("--input: give either .npy files or token shards, not both")
    from vistok.shards import TokenDataset

    source: Any = inputs[0] if len(inputs) == 1 else inputs
    if len(inputs) == 1 and not Path(inputs[0]).exists() and "{" not in inputs[0] and "://" not in inputs[0]:
        raise FileNotFoundError(f"--input {inputs[0]}: no such shard directory, shard or .npy file")
    for sample in TokenDataset(source, codebook_size=codebook_size):
        yield sample["key"], sample["tokens"]


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_to_pngs(tok: Any, sequences: Iterator[tuple[str, torch.Tensor]], output: Path,
                   num_tokens: int | None = None, batch_size: int = 64, progress: bool = True,
                   **sampling: Any) -> int:
    """Decode (key, ids) pairs in batches, writing `<key>.png`; returns the number written. A key seen twice
    is an error (its PNG would be overwritten)."""
    from tqdm import tqdm

    seen: set[str] = set()
    count = 0
    with tqdm(unit="img", desc="decode", disable=not progress, dynamic_ncols=True) as bar:
        for batch in _batched(sequences, batch_size):
            keys = [k for k, _ in batch]
            for k in keys:
                if k in seen:
                    raise ValueError(f"sample key {k!r} appears twice in the input; its PNG would be overwritten")
                seen.add(k)
            seqs = [ids if num_tokens is None else ids[:num_tokens] for _, ids in batch]
            for key, ids in zip(keys, seqs):  # name the sample (shards are checked by TokenDataset already)
                try:
                    tok.quantizer.check_indices(ids)
                except ValueError as e:
                    raise ValueError(f"sample {key}: {e}") from None
            images = tok.decode(seqs, **sampling).cpu()  # (B, 3, H, W)
            for key, image in zip(keys, images):
                save_png(image, output / f"{key}.png")
            count += len(batch)
            bar.update(len(batch))
    return count


def _common_arguments(p: Any) -> None:
    from vistok.cli import finite_float, positive_int
    from vistok.devices import AUTO
    from vistok.devices import HELP as DEVICE_HELP

    p.add_argument("--num-tokens", type=positive_int, default=None,
                   help="decode the first K tokens of each sequence (default: all of them)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps (generative decoders)")
    p.add_argument("--guidance", type=finite_float, default=None, help="guidance scale (generative decoders)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (generative decoders)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default=AUTO, help=DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output directory")


def _model(a: Any):
    from vistok.checkpoint import load_tokenizer
    from vistok.devices import resolve_device

    device = resolve_device(a.device)  # before the (slow) model load
    tok = load_tokenizer(a.model, device)
    if a.num_tokens is not None and a.num_tokens > tok.max_tokens:
        raise ValueError(f"--num-tokens {a.num_tokens}: the model decodes 1..{tok.max_tokens} tokens")
    sampling = {k: v for k, v in dict(steps=a.steps, guidance_scale=a.guidance, seed=a.seed).items() if v is not None}
    return tok, sampling


def decode_main(argv: list[str]) -> None:
    from vistok.cli import parser

    p = parser("vistok decode", "Decode token shards (or a .npy of ids) to one PNG per sample, named by its key.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, nargs="+",
                   help="token shard directory (its manifest), shard urls / brace patterns, or .npy files of "
                        "integer ids, shape (K,) or (B, K)")
    p.add_argument("--output", required=True, help="directory for the PNGs (new or empty unless --overwrite)")
    _common_arguments(p)
    a = p.parse_args(argv)
    output = Path(a.output)
    if output.is_dir() and any(output.iterdir()) and not a.overwrite:  # before the model load
        _output_dir(output, a.overwrite)
    tok, sampling = _model(a)
    sequences = token_sequences(a.input, tok.codebook_size)
    first = next(sequences, None)  # a bad input fails before the output directory is made
    if first is None:
        raise ValueError(f"--input {' '.join(a.input)}: no token sequences")
    output = _output_dir(output, a.overwrite)

    def chained() -> Iterator[tuple[str, torch.Tensor]]:
        yield first
        yield from sequences

    n = decode_to_pngs(tok, chained(), output, a.num_tokens, a.batch_size, **sampling)
    print(f"decoded {n} samples -> {output}")


def reconstruct_main(argv: list[str]) -> None:
    from tqdm import tqdm

    from vistok.cli import parser
    from vistok.data.images import list_images, load_images
    from vistok.metrics.psnr import per_image_psnr

    p = parser("vistok reconstruct", "Encode and decode a folder of images (resized and centre-cropped to the "
               "model's size, as encode does); write the reconstructions as PNGs and print the mean PSNR.")
    p.add_argument("--model", required=True, help="export directory or .ckpt")
    p.add_argument("--input", required=True, help="image folder (recursive)")
    p.add_argument("--output", required=True,
                   help="directory for the PNGs, mirroring the input's subfolders (new or empty unless --overwrite)")
    _common_arguments(p)
    a = p.parse_args(argv)
    root = Path(a.input)
    files = list_images(root)  # a missing or empty folder fails before the model load
    output = Path(a.output)
    if output.is_dir() and any(output.iterdir()) and not a.overwrite:
        _output_dir(output, a.overwrite)
    tok, sampling = _model(a)
    output = _output_dir(output, a.overwrite)
    names = _png_names(root, files)
    psnrs: list[float] = []
    skipped = 0
    with tqdm(total=len(files), unit="img", desc="reconstruct", dynamic_ncols=True) as bar:
        for i in range(0, len(files), a.batch_size):
            chunk, images = [], []
            for f in files[i:i + a.batch_size]:
                try:
                    images.append(load_images(f, tok.input_spec.side)[0])
                    chunk.append(f)
                except OSError as e:
                    tqdm.write(f"skipping {e}")
                    skipped += 1
            if images:
                x = torch.stack(images).to(tok.device)  # (B, 3, S, S)
                recon = tok.decode(tok.encode(x, num_tokens=a.num_tokens), **sampling)
                psnrs += per_image_psnr(recon, x).cpu().tolist()
                for f, image in zip(chunk, recon.cpu()):
                    save_png(image, output / names[f])
            bar.update(len(files[i:i + a.batch_size]))
    if not psnrs:
        raise ValueError(f"--input {root}: none of the {len(files)} images could be read")
    k = a.num_tokens or tok.max_tokens
    tail = f" ({skipped} unreadable images skipped)" if skipped else ""
    print(f"reconstructed {len(psnrs)} images at K={k} tokens -> {output}; mean PSNR {np.mean(psnrs):.2f} dB{tail}")


def _png_names(root: Path, files: list[Path]) -> dict[Path, str]:
    """`sub/a.jpg` -> `sub/a.png`; when two inputs would share a name (`a.jpg`, `a.png`), both keep their
    extension (`a.jpg.png`, `a.png.png`)."""
    plain = {f: str(f.relative_to(root).with_suffix(".png")) for f in files}
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name] = counts.get(name, 0) + 1
    return {f: name if counts[name] == 1 else f"{f.relative_to(root)}.png" for f, name in plain.items()}
