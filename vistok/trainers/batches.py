"""The batch convention shared by the training system and its callbacks: `{"image": (B, 3, H, W)}` or
`{"video": (B, 3, T, H, W)}`, float in [-1, 1], plus bookkeeping keys ("skipped", keys/sources)."""

from __future__ import annotations

from typing import Any

import torch


def pixels(batch: dict[str, Any]) -> torch.Tensor:
    """The batch's pixels: "video" (B, 3, T, H, W) when present, else "image" (B, 3, H, W)."""
    if "video" in batch:
        return batch["video"]
    if "image" not in batch:
        raise ValueError(f"a training batch needs an 'image' or a 'video' key, got keys {sorted(batch)}")
    return batch["image"]
