"""PatchGAN discriminator (pix2pix, Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks"), in the form VQGAN (Esser et al. 2021, taming-transformers `NLayerDiscriminator`) and
TiTok's training code use.

Layout: a 4x4 stride-2 conv (no norm) + LeakyReLU(0.2), then `n_layers - 1` further 4x4 stride-2 stages and
one 4x4 stride-1 stage with norm + LeakyReLU(0.2), channels `ndf * min(2**i, 8)`, and a final 4x4 stride-1
conv to one logit per patch. A 256 px image with `n_layers=3` gives (B, 1, 30, 30) logits.

Departures from taming: the norm is a choice (`"batch"` as taming, `"group"` whose statistics do not depend
on the batch or on the process count under DDP, or `"none"`); convs before a norm have no bias (as taming's
BatchNorm path, for every norm); the weights are initialised as taming's `weights_init` (N(0, 0.02) convs,
N(1, 0.02) norm scales) in the constructor rather than by an external `apply`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.nn.global_batch_norm import GlobalBatchNorm2d

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":  # its statistics cover the global batch under DDP (set_distributed, by the system)
        return GlobalBatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)  # 32 groups when the width allows
    return nn.Identity()


@configurable
class NLayerDiscriminator(nn.Module):
    """(B, in_channels, H, W) images in [-1, 1] -> (B, 1, H', W') real/fake logits, one per patch."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"NLayerDiscriminator: norm must be one of {NORMS}, got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"NLayerDiscriminator: n_layers must be >= 1, got {n_layers}")
        if in_channels < 1 or ndf < 1:
            raise ValueError(f"NLayerDiscriminator: in_channels and ndf must be >= 1, got {in_channels}, {ndf}")
        bias = norm == "none"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1  # the last stage keeps the resolution
            out = ndf * min(2 ** i, 8)
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=bias), _norm(norm, out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.main[0].in_channels:
            raise ValueError(f"NLayerDiscriminator expects (B, {self.main[0].in_channels}, H, W) images, "
                             f"got {tuple(images.shape)}")
        return self.main(images)  # (B, 1, H', W')
