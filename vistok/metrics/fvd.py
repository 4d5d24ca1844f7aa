"""FVD with the standard Kinetics-400 I3D (Unterthiner et al. 2018; TorchScript of StyleGAN-V / the
original TF-Hub model).

Protocol: videos (B, 3, T, H, W) in [-1, 1]; the first `frames` (16) frames form a clip; frames are resized to
224x224 (bilinear, no antialias); the I3D TorchScript returns 400-d features. Scripts whose forward takes
`rescale`, `resize`, `return_features` (the StyleGAN-V `i3d_torchscript.pt`) are called with
`rescale=False, resize=False, return_features=True`, since both steps are done here. Statistics stream in
float64 (`GaussianStats`); the distance is the Frechet distance shared with FID. The weights cannot be
downloaded here: pass their path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.metrics.frechet import GaussianStats

CLIP_FRAMES = 16
INPUT_SIZE = 224


class I3DFeatures(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, D) features (D = 400 for the Kinetics-400 I3D)."""

    def __init__(self, path: str | Path | None, device: str | torch.device = "cpu",
                 frames: int = CLIP_FRAMES) -> None:
        super().__init__()
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(
                f"I3D weights not found ({'no path given' if path is None else path}): pass i3d=PATH "
                "(CLI --i3d PATH) to the Kinetics-400 I3D TorchScript `i3d_torchscript.pt`; it cannot be "
                "downloaded at run time")
        self.path, self.device, self.frames = Path(path), torch.device(device), frames
        try:
            net = torch.jit.load(str(self.path), map_location=device).eval()
        except Exception as e:
            raise ValueError(f"i3d={self.path}: not a loadable TorchScript file ({e})") from None
        self.__dict__["net"] = net  # not a submodule: never in a state_dict
        args = {a.name for a in net.forward.schema.arguments}
        self.kwargs = ({"rescale": False, "resize": False, "return_features": True}
                       if "return_features" in args else {})

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"videos must be (B, 3, T, H, W) in [-1, 1], got shape {tuple(videos.shape)}")
        b, _, t, h, w = videos.shape
        if t < self.frames:
            raise ValueError(f"FVD clips have {self.frames} frames, got videos with T={t}")
        x = videos[:, :, : self.frames].to(self.device, torch.float32).clamp(-1, 1)
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            x = x.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W)
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
            x = x.unflatten(0, (b, self.frames)).transpose(1, 2)  # (B, 3, T, 224, 224)
        with torch.inference_mode():
            feats = self.net(x, **self.kwargs)
        return feats.reshape(b, -1).float().clone()


def _batches(videos: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    return videos.split(batch_size) if isinstance(videos, torch.Tensor) else videos


def compute_fvd(real: torch.Tensor | Iterable[torch.Tensor], fake: torch.Tensor | Iterable[torch.Tensor],
                i3d: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 8,
                frames: int = CLIP_FRAMES) -> float:
    """FVD between two video sets: (B, 3, T, H, W) tensors or iterables of batches, in [-1, 1]."""
    net = I3DFeatures(i3d, device, frames)
    stats: list[GaussianStats] = []
    for videos in (real, fake):
        acc: GaussianStats | None = None
        for x in _batches(videos, batch_size):
            f = net(x)
            acc = acc or GaussianStats(f.shape[1])
            acc.update(f)
        if acc is None:
            raise ValueError("compute_fvd got an empty video set")
        stats.append(acc)
    return stats[0].distance(stats[1])
