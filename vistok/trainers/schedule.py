"""Learning-rate schedule: linear warm-up then cosine decay to `min_ratio` of the peak."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0, start: float = 0.0) -> float:
    """The factor of the peak learning rate at `step` (0-based) of `total`: a linear warm-up over `warmup` steps
    from `start` (0: from nothing; LARP warms up from its floor, `start = min_ratio`) to 1, then a cosine down to
    `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return start + (1 - start) * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(warmup: float, total: int) -> int:
    """A warm-up given as a fraction of the run (< 1) or as a number of steps, in steps of a `total`-step run."""
    return int(warmup * total) if warmup < 1 else int(warmup)
