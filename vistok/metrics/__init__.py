"""Metrics and reports: rFID/FVD (Frechet distances), PSNR/SSIM/LPIPS, video
metrics (`evaluate_videos`), codec baselines, codebook statistics.

The public functions are imported lazily, so that `vistok.metrics.report` (used by training callbacks) does not
pull in the FID / FVD modules.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "compute_fid": "vistok.metrics.fid",
    "compute_fvd": "vistok.metrics.fvd",
    "evaluate_videos": "vistok.metrics.video",
    "frechet_distance": "vistok.metrics.frechet",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vistok.metrics' has no attribute {name!r}")
