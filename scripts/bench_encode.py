"""End-to-end `vistok encode` throughput against the model alone (issue 5, item 7; target >= 90%).

    python scripts/bench_encode.py                       # titok-demo (random weights), 512 JPEGs, batch 64
    python scripts/bench_encode.py --model EXPORT_DIR --images 2048 --workers 3 --json

Writes `--images` JPEG crops of the bundled photos (`--source-size` px, so loading includes JPEG decoding
and a resize) to a temporary folder, then times (1) model only: `tok.encode` over the same images already
decoded into tensors, same batch size; (2) end to end: `encode_to_shards` on the folder (DataLoader workers
decoding, batching, tar writing, sha256, manifest commits). Weights do not change the speed, so a variant
with random weights measures the same thing as a trained export.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vistok.data.images import load_rgb, pil_to_tensor, resize_crop
from vistok.data.sample import SamplePhotoCrops
from vistok.shards import encode_to_shards


def write_jpegs(root: Path, n: int, size: int) -> list[Path]:
    from vistok.data.images import tensor_to_uint8

    ds = SamplePhotoCrops("train", size, n, seed=0, flip=False)
    ds.fixed = True
    files = []
    from PIL import Image

    for i in range(n):
        f = root / f"{i:06d}.jpg"
        Image.fromarray(tensor_to_uint8(ds[i]["image"])).save(f, quality=90)
        files.append(f)
    return files


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--model", default=None, help="export directory or .ckpt (default: --variant)")
    p.add_argument("--variant", default="titok-demo")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--source-size", type=int, default=64, help="side of the JPEGs on disk")
    p.add_argument("--num-tokens", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    a = p.parse_args(argv)

    if a.model:
        from vistok.loading import load_tokenizer

        tok = load_tokenizer(a.model)
    else:
        from vistok.tokenizers import build_tokenizer

        tok = build_tokenizer(a.variant)
    tok = tok.to(a.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        files = write_jpegs(root / "images", a.images, a.source_size)
        x = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), tok.image_size)) for f in files])
        tok.encode(x[: a.batch_size].to(a.device), num_tokens=a.num_tokens)  # warm-up
        start = time.perf_counter()
        for i in range(0, len(x), a.batch_size):
            tok.encode(x[i:i + a.batch_size].to(a.device), num_tokens=a.num_tokens).cpu()
        model_s = time.perf_counter() - start
        start = time.perf_counter()
        s = encode_to_shards(tok, root / "images", root / "shards", num_tokens=a.num_tokens,
                             batch_size=a.batch_size, shard_size=1000, workers=a.workers, device=a.device,
                             progress=False)
        e2e_s = time.perf_counter() - start
    result = {
        "model": a.model or a.variant, "device": a.device, "images": a.images, "batch_size": a.batch_size,
        "workers": a.workers, "source_size": a.source_size, "threads": torch.get_num_threads(),
        "model_only": {"seconds": model_s, "images_per_s": a.images / model_s},
        "end_to_end": {"seconds": e2e_s, "images_per_s": s.encoded / e2e_s, "bytes": s.bytes},
    }
    result["ratio"] = result["end_to_end"]["images_per_s"] / result["model_only"]["images_per_s"]
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']} on {a.device}, {a.images} JPEGs of {a.source_size} px -> {tok.image_size} px, "
              f"batch {a.batch_size}, {a.workers} workers, {result['threads']} torch threads")
        print(f"| {'mode':<11} | {'seconds':>8} | {'images/s':>9} | {'of model-only':>13} |")
        print(f"| {'-' * 11} | {'-' * 8} | {'-' * 9} | {'-' * 13} |")
        for name, key, ratio in (("model only", "model_only", 1.0), ("end to end", "end_to_end", result["ratio"])):
            r = result[key]
            print(f"| {name:<11} | {r['seconds']:8.2f} | {r['images_per_s']:9.1f} | {ratio:13.0%} |")
    return result


if __name__ == "__main__":
    main()
