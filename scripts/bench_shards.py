"""Token shard formats: bytes per sample and reading speed, per-sample against packed (issue 25, item 3).

    python scripts/bench_shards.py                                # 64- and 1024-token samples, 10,000 of each
    python scripts/bench_shards.py --lengths 32 256 --samples 50000 --json

For each sequence length, writes the same synthetic samples (uniform ids of a `--codebook` code book, ImageNet-
like records: source path, size, label) in both formats with the encoder's own shard writer and manifest, then
reads them back with `TokenDataset` in one process (manifest hashes, sample counts and every id checked, as in
training) and with the memmap export's reader. Prints bytes per sample, the ratio of shard bytes to token bytes
(records included) and samples/s (best of `--repeat` passes). Token values do not change either figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vistok.shards import TokenDataset
from vistok.shards.manifest import Manifest
from vistok.shards.writer import TaskWriter


def write_job(out: Path, fmt: str, length: int, samples: int, shard_size: int, codebook: int, seed: int) -> int:
    """`samples` synthetic samples in `fmt` shards under `out` with a complete manifest; returns token bytes."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    dtype = np.dtype(np.uint16 if codebook <= 65536 else np.int32)
    spec = {"codebook_size": codebook, "vocab_size": codebook + 4, "max_tokens": length,
            "special_tokens": {"bos": codebook, "eos": codebook + 1, "pad": codebook + 2, "mask": codebook + 3},
            "token_dtype": dtype.name, "token_grid": [length]}
    tasks = (samples + shard_size - 1) // shard_size
    job = {"input_kind": "synthetic", "tasks": tasks, "shard_size": shard_size, "num_tokens": length}
    if fmt == "packed":
        job["shard_format"] = "packed"
    manifest = Manifest(out, {"model": None, "class": "synthetic", "weights_sha256": "0" * 64, "tokens": spec},
                        job)
    for t in range(tasks):
        w = TaskWriter(out, t, shard_size, dtype, fmt)
        for j in range(min(shard_size, samples - t * shard_size)):
            c = int(rng.integers(1000))
            i = t * shard_size + j
            ids = torch.from_numpy(rng.integers(0, codebook, length).astype(np.int64))
            meta = {"source": f"train/n{c:08d}/n{c:08d}_{i}.JPEG", "size": [500, 375], "label": c}
            w.write(f"{t:06d}_{j:06d}_n{c:08d}_{i}_JPEG", ids, meta)
        w.finish()
        manifest.commit(t, w.shards, w.skipped)
    manifest.finalize(tasks)
    return samples * length * dtype.itemsize


def read_rate(out: Path, repeat: int) -> tuple[float, int]:
    best, count = 0.0, 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = sum(1 for _ in TokenDataset(out))
        best = max(best, count / (time.perf_counter() - start))
    return best, count


def memmap_rate(out: Path, flat: Path, repeat: int) -> float:
    from vistok.shards.memmap import MemmapTokens, shards_to_memmap

    shards_to_memmap(out, flat, progress=False)
    data = MemmapTokens(flat)
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        n = sum(1 for i in range(len(data)) if data[i] is not None)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 1024], help="tokens per sample")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--codebook", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in a.lengths:
            for fmt in ("per-sample", "packed"):
                out = Path(tmp) / f"{fmt}-{length}"
                token_bytes = write_job(out, fmt, length, a.samples, a.shard_size, a.codebook, seed=length)
                shard_bytes = sum(f.stat().st_size for f in out.glob("tokens-*.tar"))
                rate, count = read_rate(out, a.repeat)
                assert count == a.samples, (count, a.samples)
                row = {"format": fmt, "tokens": length, "samples": a.samples,
                       "bytes_per_sample": shard_bytes / a.samples, "token_bytes_per_sample": token_bytes / a.samples,
                       "ratio": shard_bytes / token_bytes, "samples_per_s": rate}
                if fmt == "packed":
                    row["memmap_samples_per_s"] = memmap_rate(out, Path(tmp) / f"flat-{length}", a.repeat)
                rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=1))
        return rows
    print(f"{a.samples} samples per format, shards of {a.shard_size}, codebook {a.codebook}, one process")
    print("| tokens | format | bytes/sample | token bytes | shard/token bytes | TokenDataset samples/s | speed-up |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        base = next(r for r in rows if r["tokens"] == row["tokens"] and r["format"] == "per-sample")
        print(f"| {row['tokens']} | {row['format']} | {row['bytes_per_sample']:,.0f} | "
              f"{row['token_bytes_per_sample']:,.0f} | {row['ratio']:.2f}x | {row['samples_per_s']:,.0f} | "
              f"{row['samples_per_s'] / base['samples_per_s']:.1f}x |")
    for row in rows:
        if "memmap_samples_per_s" in row:
            print(f"memmap export of the {row['tokens']}-token samples: {row['memmap_samples_per_s']:,.0f} samples/s "
                  "(MemmapTokens[i])")
    return rows


if __name__ == "__main__":
    main()
