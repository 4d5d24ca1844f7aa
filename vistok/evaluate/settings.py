"""What `vistok eval` measures and how: one settings object for image and video models."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalSettings:
    model: str
    input: str = "sample"
    output: str = "eval"
    num_tokens: list[int] | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = 0
    baselines: list[str] = field(default_factory=lambda: ["jpeg", "webp"])
    limit: int | None = None
    batch_size: int = 32
    device: str = "auto"  # cuda when available (vistok.devices)
    inception: str | None = None
    lpips: str | None = None
    perceptual: bool = True  # LPIPS-VGG and LPIPS-Alex (weights from the cache)
    reference_stats: str | None = None  # .npz with Inception mu / sigma replacing the originals' statistics
    fid: bool = True
    progress: bool = True
    # video models (vistok.evaluate.videos)
    i3d: str | None = None  # a Kinetics-400 I3D TorchScript instead of the built-in I3D
    fvd: bool = True
    fps: float | None = None  # the rate videos are read at (None: each file's own; sample clips: 8)
