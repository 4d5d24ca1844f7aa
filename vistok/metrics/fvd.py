"""FVD (Unterthiner et al. 2018) with the Kinetics-400 I3D: by default vistok's PyTorch port of the TF-Hub
network (`vistok.metrics.i3d.I3D`, weights from the cache); `i3d=PATH` takes a TorchScript instead (e.g.
StyleGAN-V's `i3d_torchscript.pt`, or a stand-in network in tests).

Protocol (the StyleGAN-V / TATS convention that LARP and OmniTokenizer report rFVD with): videos (B, 3, T, H, W)
in [-1, 1]; the first `frames` (16) frames form a clip; frames are quantised to 8 bits (what a saved video holds),
resized to 224x224 (bilinear, align_corners=False, no antialias), scaled back to [-1, 1]; the features are the
400 logits averaged over time. Scripts whose forward takes `rescale`, `resize`, `return_features` (StyleGAN-V)
are called with `rescale=False, resize=False, return_features=True`, since both steps are done here.
Statistics stream in float64 (`GaussianStats`); the distance is the Frechet distance shared with FID.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.data.images import to_uint8
from vistok.metrics.frechet import GaussianStats

CLIP_FRAMES = 16
INPUT_SIZE = 224


class I3DFeatures(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, D) features (D = 400 for the Kinetics-400 I3D). `path`: None for the
    built-in I3D, else a TorchScript file."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 frames: int = CLIP_FRAMES) -> None:
        super().__init__()
        self.device, self.frames = torch.device(device), frames
        self.path = Path(path) if path is not None else None
        self.kwargs: dict[str, bool] = {}
        if path is None:
            from vistok.metrics.i3d import I3D

            net = I3D().to(self.device)
            self.info = dict(net.info)
        else:
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"I3D weights not found ({path}): pass i3d=PATH (CLI --i3d PATH) to a Kinetics-400 I3D "
                    "TorchScript, or leave it out for the built-in I3D (`vistok weights fetch` converts its weights)")
            try:
                net = torch.jit.load(str(self.path), map_location=device).eval()
            except Exception as e:
                raise ValueError(f"i3d={self.path}: not a loadable TorchScript file ({e})") from None
            args = {a.name for a in net.forward.schema.arguments}
            self.kwargs = ({"rescale": False, "resize": False, "return_features": True}
                           if "return_features" in args else {})
            self.info = {"network": f"TorchScript {self.path}", "weights_sha256": _sha256(self.path)}
        self.__dict__["net"] = net  # not a submodule: never in a state_dict

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"videos must be (B, 3, T, H, W) in [-1, 1], got shape {tuple(videos.shape)}")
        b, _, t, h, w = videos.shape
        if t < self.frames:
            raise ValueError(f"FVD clips have {self.frames} frames, got videos with T={t}")
        x = to_uint8(videos[:, :, : self.frames]).to(self.device, torch.float32) / 127.5 - 1  # 8-bit frames
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            x = x.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W)
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
            x = x.unflatten(0, (b, self.frames)).transpose(1, 2)  # (B, 3, T, 224, 224)
        with torch.inference_mode():
            feats = self.net(x, **self.kwargs)
        return feats.reshape(b, -1).float().clone()


def _sha256(path: Path) -> str:
    from vistok.weights.cache import sha256_file

    return sha256_file(path)


def protocol(net: I3DFeatures, clips: int, fps: float | None = None) -> dict:
    """What an rFVD number was measured with."""
    return {**net.info, "features": "400 logits averaged over time", "frames": net.frames, "fps": fps,
            "input": "frames quantised to 8 bits, then x / 127.5 - 1",
            "resize": f"{INPUT_SIZE}x{INPUT_SIZE} bilinear, align_corners=False, no antialias", "clips": clips,
            "convention": "StyleGAN-V / TATS (first 16 frames of each clip)"}


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
