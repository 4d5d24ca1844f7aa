"""Fixed sine-cosine position embeddings (Vaswani et al. 2017; the 2-D form of MAE, He et al. 2022), as LARP
uses them for its patches (3-D: a 2-D table per frame plus a 1-D table over latent frames) and its latent tokens
(1-D). Computed in float64, returned in float32.

Shapes: `sincos_1d` -> (M, D); `sincos_3d` -> (T * g * g, D), time-major, then rows, then columns.
"""

from __future__ import annotations

import torch


def _table(dim: int, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    if dim % 2:
        raise ValueError(f"a sine-cosine embedding needs an even width, got {dim}")
    omega = 1.0 / base ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.reshape(-1).double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # float64


def _table_2d(dim: int, grid: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([_table(dim // 2, cols), _table(dim // 2, rows)], dim=1)


def sincos_1d(dim: int, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """(M,) positions -> (M, dim): sin of every frequency, then cos, frequencies base^(-2i/dim)."""
    return _table(dim, positions, base).float()


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid * grid, dim) over a square grid, row-major: the first half of the width encodes the column, the
    second half the row (MAE's layout)."""
    return _table_2d(dim, grid).float()


def sincos_3d(dim: int, grid: int, frames: int) -> torch.Tensor:
    """(frames * grid * grid, dim): the 2-D table of a frame plus the full-width 1-D table of its index."""
    spatial = _table_2d(dim, grid).reshape(1, grid * grid, dim)
    temporal = _table(dim, torch.arange(frames)).reshape(frames, 1, dim)
    return (spatial + temporal).reshape(-1, dim).float()
