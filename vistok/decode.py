"""Tokens back to images: `vistok decode` (token shards or a .npy -> PNGs) and `vistok reconstruct` (an image
folder -> encode -> decode -> PNGs and PSNR).

    vistok decode --model DIR --input SHARDS_DIR_OR_URLS_OR_NPY --output PNG_DIR [--num-tokens K]
    vistok reconstruct --model DIR --input IMAGE_FOLDER --output PNG_DIR [--num-tokens K]

Token shards are read with `vistok.shards.TokenDataset` (hash and count checks against the manifest, every id
against the model's codebook); a .npy holds one sequence (K,) or a batch (B, K) of integer ids. Each sample
becomes `<key>.png` (a .npy's samples are `<stem>` or `<stem>_<row>`); `--num-tokens K` decodes the first K
tokens of each sequence (a shorter sequence is decoded whole). The output directory must be new or empty
unless `--overwrite`, so no earlier PNG is replaced silently.

Video models (`vistok.data.model_clips`): `decode` writes `<key>.mp4` per sample (`--format png`: a folder of
frame PNGs `<key>/000.png`, ...) at the fps the sample's json records (else `--fps`, default 8); a grid model's
.npy holds one clip (T', h*w). `reconstruct` takes a folder of videos (and images, one-frame videos) and writes
`<name>.mp4` (or frame folders) mirroring it, with the mean per-frame PSNR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistok.data.images import tensor_to_uint8
from vistok.shards.names import inside


def output_dir(path: str | Path, overwrite: bool) -> Path:
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


def npy_sequences(path: str | Path, frame_tokens: int | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, 1-D int64 ids) of a .npy of shape (K,) or (B, K); never unpickles. With `frame_tokens` (h*w of a grid
    video model) a 2-D array (T', h*w) is one clip, flattened time-major."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a plain numpy .npy file ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or not arr.size:
        raise ValueError(f"{path}: expected integer token ids of shape (K,) or (B, K), got {arr.dtype} of shape "
                         f"{arr.shape}")
    if arr.ndim == 1 or frame_tokens is not None:
        if arr.ndim == 2 and arr.shape[1] != frame_tokens:
            raise ValueError(f"{path}: a clip of this model is (T', {frame_tokens}) ids, got shape {arr.shape}")
        yield path.stem, torch.from_numpy(arr.astype(np.int64).reshape(-1))
        return
    for i, row in enumerate(arr):
        yield f"{path.stem}_{i:06d}", torch.from_numpy(row.astype(np.int64))


def token_sequences(inputs: list[str], codebook_size: int, frame_tokens: int | None = None,
                    infos: dict[str, dict] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, ids) from .npy files or token shards (a shard directory, a manifest, urls or brace patterns).
    `frame_tokens`: h*w of a grid video model (its samples are (T', h*w)); `infos` collects each shard
    sample's json by key (a video's fps)."""
    if all(str(i).endswith(".npy") for i in inputs):
        for i in inputs:
            if not Path(i).is_file():
                raise FileNotFoundError(f"--input {i}: file not found")
            yield from npy_sequences(i, frame_tokens)
        return
    if any(str(i).endswith(".npy") for i in inputs):
        raise ValueError("--input: give either .npy files or token shards, not both")
    from vistok.shards import TokenDataset

    source: Any = inputs[0] if len(inputs) == 1 else inputs
    if len(inputs) == 1 and not Path(inputs[0]).exists() and "{" not in inputs[0] and "://" not in inputs[0]:
        raise FileNotFoundError(f"--input {inputs[0]}: no such shard directory, shard or .npy file")
    for sample in TokenDataset(source, codebook_size=codebook_size, frame_tokens=frame_tokens):
        if infos is not None:
            infos[sample["key"]] = sample["info"]
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


def save_video(video: torch.Tensor, output: Path, name: str, fps: float, video_format: str = "mp4") -> Path:
    """(3, T, H, W) in [-1, 1] -> `<output>/<name>.mp4` (H.264), or `<output>/<name>/000.png, ...` ("png")."""
    from vistok.data.video_io import write_video

    if video_format == "png":
        folder = inside(output, name)
        for t in range(video.shape[1]):
            save_png(video[:, t], folder / f"{t:03d}.png")
        return folder
    path = inside(output, name, ".mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    from vistok.data.images import to_uint8

    return write_video(path, to_uint8(video).permute(1, 2, 3, 0).cpu().numpy(), fps=fps)  # (T, H, W, 3)


def decode_to_pngs(tok: Any, sequences: Iterator[tuple[str, torch.Tensor]], output: Path,
                   num_tokens: int | None = None, batch_size: int = 64, progress: bool = True,
                   infos: dict[str, dict] | None = None, default_fps: float = 8.0, video_format: str = "mp4",
                   **sampling: Any) -> int:
    """Decode (key, ids) pairs in batches, writing `<key>.png` (a video model: `<key>.mp4` at the fps of
    `infos[key]`, else `default_fps`, or frame PNGs with `video_format="png"`); returns the number written. A
    key seen twice is an error (its file would be overwritten), and so is a key that is not a safe relative name
    (`vistok.shards.names`: `..` parts, absolute paths), checked before its batch is decoded."""
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
                inside(output, key, ".png")  # every key becomes a path under `output`, or nothing is written
                try:
                    tok.quantizer.check_indices(ids)
                    if tok.input_spec.is_video:
                        tok._batch_ids([ids])  # a grid clip must be whole latent frames
                except ValueError as e:
                    raise ValueError(f"sample {key}: {e}") from None
            if tok.input_spec.is_video:  # clip lengths differ: one clip at a time, (3, T, H, W)
                for key, ids in zip(keys, seqs):
                    fps = float((infos or {}).get(key, {}).get("fps") or default_fps)
                    save_video(tok.decode(ids[None], **sampling)[0].cpu(), output, key, fps, video_format)
            else:
                images = tok.decode(seqs, **sampling).cpu()  # (B, 3, H, W)
                for key, image in zip(keys, images):
                    save_png(image, inside(output, key, ".png"))
            count += len(batch)
            bar.update(len(batch))
    return count


def reconstruct_images(tok: Any, root: Path, output: Path, num_tokens: int | None, batch_size: int,
                       overwrite: bool, **sampling: Any) -> str:
    """`vistok reconstruct` with an image model: every image of the folder encoded and decoded, PNGs mirroring
    the folder; returns the summary line (count, K, mean PSNR, skipped files)."""
    from tqdm import tqdm

    from vistok.data.images import list_images, load_images
    from vistok.metrics.psnr import per_image_psnr

    files = list_images(root)
    output = output_dir(output, overwrite)
    names = _png_names(root, files)
    psnrs: list[float] = []
    skipped = 0
    with tqdm(total=len(files), unit="img", desc="reconstruct", dynamic_ncols=True) as bar:
        for i in range(0, len(files), batch_size):
            chunk, images = [], []
            for f in files[i:i + batch_size]:
                try:
                    images.append(load_images(f, tok.input_spec.side)[0])
                    chunk.append(f)
                except OSError as e:
                    tqdm.write(f"skipping {e}")
                    skipped += 1
            if images:
                x = torch.stack(images).to(tok.device)  # (B, 3, S, S)
                recon = tok.decode(tok.encode(x, num_tokens=num_tokens), **sampling)
                psnrs += per_image_psnr(recon, x).cpu().tolist()
                for f, image in zip(chunk, recon.cpu()):
                    save_png(image, output / names[f])
            bar.update(len(files[i:i + batch_size]))
    if not psnrs:
        raise ValueError(f"--input {root}: none of the {len(files)} images could be read")
    k = num_tokens or tok.max_tokens
    tail = f" ({skipped} unreadable images skipped)" if skipped else ""
    return f"reconstructed {len(psnrs)} images at K={k} tokens -> {output}; mean PSNR {np.mean(psnrs):.2f} dB{tail}"


def reconstruct_videos(tok: Any, root: Path, output: Path, num_tokens: int | None, fps: float | None,
                       video_format: str, overwrite: bool, **sampling: Any) -> str:
    """`vistok reconstruct` with a video model: every video (and image) of the folder as the model's clip,
    encoded and decoded one at a time; `<name>.mp4` (or frame PNGs) mirroring the folder; returns the summary
    line (mean per-frame PSNR)."""
    from tqdm import tqdm

    from vistok.data.images import IMAGE_EXTENSIONS, no_images_error, scan_images
    from vistok.data.model_clips import load_model_clip
    from vistok.data.video_io import VIDEO_EXTENSIONS
    from vistok.metrics.video import per_frame_psnr_ssim

    listing = scan_images(root, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    if not listing.files:
        raise no_images_error(listing)
    output = output_dir(output, overwrite)
    names = _png_names(root, listing.files)
    psnrs: list[float] = []
    skipped = 0
    for f in tqdm(listing.files, unit="clip", desc="reconstruct", dynamic_ncols=True):
        try:
            clip = load_model_clip(f, tok.input_spec, fps=fps)
        except OSError as e:
            tqdm.write(f"skipping {e}")
            skipped += 1
            continue
        x = clip.video[None].to(tok.device)  # (1, 3, T, S, S)
        recon = tok.decode(tok.encode(x, num_tokens=num_tokens), **sampling)
        x = x[:, :, : recon.shape[2]]  # a grid prefix (--num-tokens) decodes its first frames only
        psnrs.append(float(per_frame_psnr_ssim(x.cpu(), recon.cpu())[0].mean()))
        save_video(recon[0].cpu(), output, names[f].removesuffix(".png"), fps or clip.fps, video_format)
    if not psnrs:
        raise ValueError(f"--input {root}: none of the {len(listing.files)} files could be read")
    tail = f" ({skipped} unreadable files skipped)" if skipped else ""
    return f"reconstructed {len(psnrs)} clips -> {output}; mean per-frame PSNR {np.mean(psnrs):.2f} dB{tail}"


def _png_names(root: Path, files: list[Path]) -> dict[Path, str]:
    """`sub/a.jpg` -> `sub/a.png`; when two inputs would share a name (`a.jpg`, `a.png`), both keep their
    extension (`a.jpg.png`, `a.png.png`)."""
    plain = {f: str(f.relative_to(root).with_suffix(".png")) for f in files}
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name] = counts.get(name, 0) + 1
    return {f: name if counts[name] == 1 else f"{f.relative_to(root)}.png" for f, name in plain.items()}
