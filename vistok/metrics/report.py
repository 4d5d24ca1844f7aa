"""Pictures next to the numbers: labelled image grids and token ladders as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vistok.data.images import tensor_to_uint8  # noqa: E402


def save_image_grid(
    columns: Sequence[torch.Tensor], path: str | Path, column_labels: Sequence[str], title: str | None = None,
    cell: float = 1.1, row_labels: Sequence[str] | None = None,
) -> Path:
    """Write a grid: column j shows `columns[j]` (B, 3, H, W) in [-1, 1], one image per row (`row_labels`
    written left of the first column)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = columns[0].shape[0], len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + (0.4 if title else 0.2)),
                             squeeze=False)
    for j, (images, label) in enumerate(zip(columns, column_labels)):
        for i in range(rows):
            ax = axes[i][j]
            ax.imshow(tensor_to_uint8(images[i]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.97 if title else 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rate_distortion(rows: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Write rate_distortion.png: PSNR and SSIM against bits per pixel (log scale), one curve per method.
    `rows` are metrics.json rows: {"method", "bpp", "psnr", "ssim", "tokens"?, "quality"?}; tokenizer points are
    labelled with their token count K."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for method in methods:
            pts = sorted((r["bpp"], r[key], r.get("tokens")) for r in rows
                         if r["method"] == method and r.get(key) is not None)
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.plot(xs, ys, marker="o", ms=3, label=method)
            if method == "tokenizer":
                for x, y, k in pts:
                    ax.annotate(f"K={k}", (x, y), fontsize=6, xytext=(2, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
