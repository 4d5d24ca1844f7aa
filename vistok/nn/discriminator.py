"""PatchGAN discriminators (pix2pix, Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks"): the 2-D one in the form VQGAN (Esser et al. 2021, taming-transformers
`NLayerDiscriminator`) and TiTok's training code use, and its 3-D twin that judges whole clips, as TATS (Ge et al.
2022) and OmniTokenizer (Wang et al. 2024, `NLayerDiscriminator3D`) use beside the per-frame one.

Layout: a 4x4 stride-2 conv (no norm) + LeakyReLU(0.2), then `n_layers - 1` further 4x4 stride-2 stages and
one 4x4 stride-1 stage with norm + LeakyReLU(0.2), channels `ndf * min(2**i, 8)`, and a final 4x4 stride-1
conv to one logit per patch. A 256 px image with `n_layers=3` and `padding=1` gives (B, 1, 30, 30) logits; the
3-D one has 4x4x4 kernels, strides in time as in space, and gives (B, 1, T', H', W').

`features(x)` returns the output of every stage, the logits last: pix2pixHD's GAN feature-matching loss
(Wang et al. 2018), which OmniTokenizer adds to the generator's loss, compares them between real and
reconstructed inputs (`vistok.trainers.adversarial`).

Departures from taming: the norm is a choice (`"batch"` as taming, `"group"` whose statistics do not depend
on the batch or on the process count under DDP, or `"none"`); convs before a norm have no bias (as taming's
BatchNorm path, for every norm; OmniTokenizer's keep theirs); the weights are initialised as taming's
`weights_init` (N(0, 0.02) convs, N(1, 0.02) norm scales) in the constructor rather than by an external `apply`.
`padding` is taming's 1 by default; OmniTokenizer's discriminators use 2 (`ceil((4 - 1) / 2)`).

OmniTokenizer's options, off by default (the official training script switches on `--apply_noise` in all three
stages):
- `noise=True` is its `--apply_noise` (`ApplyNoise` before the first conv): one Gaussian noise map per sample,
  (B, 1, H, W) or (B, 1, T, H, W), shared by the channels and scaled by a learned per-channel weight that starts
  at zero: `x + w[c] * n` (`InputNoise`). At initialisation the discriminator is therefore the noise-free one;
  the weight grows only if the discriminator's loss asks for it. The official noise comes from torch's global
  RNG; here it comes from the module's `generator` (seeded, and saved in each checkpoint, by the training system,
  `vistok.trainers.rng`), so a resumed run draws the same noise. As in the official code the noise is drawn in
  evaluation mode too (validation draws from fixed-seed generators).
- `--apply_blur` needs nothing: the official `Blur2d(f=None)` it inserts before each stride-2 stage has no kernel
  and returns its input unchanged, so the official blurred discriminator is this one.
- `norm_logits=True` (3-D only) is the official `NLayerDiscriminator3D`'s head: its last 1-channel conv is
  followed by a norm of the discriminator's kind with one channel (`Normalize(1, norm_type)`; `batch` gives a
  one-channel GlobalBatchNorm3d) and LeakyReLU(0.2), so its logits are normalised and leaky-ReLU'd. The official
  2-D discriminator has no such head, nor has vistok's by default (the logits are the conv's). The last conv
  keeps its bias before that norm (as the official one), so the names and shapes of the other weights are those
  of the discriminator without the head.

`features(x)` matches the official `res[1:]`: the official list starts with the (noised) input and returns
every entry after it, i.e. the output of each of the `n_layers + 1` stages and, last, the logits (with
`norm_logits`, the output of the norm + LeakyReLU head, which the official code also returns as the logits);
feature matching leaves the last entry out, as the official loop `range(len(pred) - 1)` does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.nn.global_batch_norm import GlobalBatchNorm2d, GlobalBatchNorm3d

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "batch":  # its statistics cover the global batch under DDP (set_distributed, by the system)
        return GlobalBatchNorm2d(channels) if dims == 2 else GlobalBatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)  # 32 groups when the width allows
    return nn.Identity()


def _check(name: str, in_channels: int, ndf: int, n_layers: int, norm: str, padding: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"{name}: norm must be one of {NORMS}, got {norm!r}")
    if n_layers < 1:
        raise ValueError(f"{name}: n_layers must be >= 1, got {n_layers}")
    if in_channels < 1 or ndf < 1:
        raise ValueError(f"{name}: in_channels and ndf must be >= 1, got {in_channels}, {ndf}")
    if padding not in (1, 2):
        raise ValueError(f"{name}: padding must be 1 (taming) or 2 (OmniTokenizer), got {padding}")


class InputNoise(nn.Module):
    """`x + w[c] * n`: one N(0, 1) map per sample, (B, 1, *spatial), shared by the channels, scaled by a learned
    per-channel weight `w` that starts at zero (OmniTokenizer's `ApplyNoise`). The map is drawn from
    `self.generator` (None: torch's global RNG), in fp32 so that the draw does not depend on the input's dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.generator: torch.Generator | None = None  # set by the training system (vistok.trainers.rng)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.generator
        shape = (x.shape[0], 1, *x.shape[2:])
        noise = torch.randn(shape, generator=g, device=g.device if g is not None else x.device)
        w = self.weight.view(1, -1, *([1] * (x.ndim - 2)))
        return x + (w * noise.to(x.device)).to(x.dtype)


class _PatchGAN(nn.Module):
    """The layout above in `dims` (2 or 3) dimensions; `main` is one Sequential (the checkpoint names of the
    2-D discriminator are those of earlier vistok versions; the options add `noise.weight` and entries after
    the last conv's, so the names without them are unchanged)."""

    dims: int

    def _build(self, in_channels: int, ndf: int, n_layers: int, norm: str, padding: int, noise: bool = False,
               norm_logits: bool = False) -> None:
        _check(type(self).__name__, in_channels, ndf, n_layers, norm, padding)
        conv = nn.Conv2d if self.dims == 2 else nn.Conv3d
        bias = norm == "none"
        self.noise = InputNoise(in_channels) if noise else nn.Identity()
        layers: list[nn.Module] = [conv(in_channels, ndf, 4, 2, padding), nn.LeakyReLU(0.2, True)]
        ends = [len(layers)]  # where each stage ends in `main` (features() returns those outputs)
        width = ndf
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1  # the last stage keeps the resolution
            out = ndf * min(2 ** i, 8)
            layers += [conv(width, out, 4, stride, padding, bias=bias), _norm(norm, out, self.dims),
                       nn.LeakyReLU(0.2, True)]
            ends.append(len(layers))
            width = out
        layers.append(conv(width, 1, 4, 1, padding))
        if norm_logits:  # OmniTokenizer's 3-D head: norm (one channel) + LeakyReLU after the last conv
            layers += [_norm(norm, 1, self.dims), nn.LeakyReLU(0.2, True)]
        self.main = nn.Sequential(*layers)
        self._stage_ends = ends
        self.in_channels, self.n_layers = in_channels, n_layers
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, InputNoise):
                m.reset_parameters()

    def too_small(self, height: int, width: int) -> str | None:
        """Why frames of height x width are too small for the convolutions (None: they are not): each conv's
        output side is (n + 2p - k) // s + 1 and must stay >= 1. Asked before any work (multi-resolution
        training) instead of failing at the first adversarial step."""
        sides = [height, width]
        for m in self.main:
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                k, st, pad = m.kernel_size[-1], m.stride[-1], m.padding[-1]
                if any(n + 2 * pad < k for n in sides):
                    return (f"{type(self).__name__} needs frames of at least its receptive field; {height} x {width} "
                            "shrinks below one pixel in its convolutions")
                sides = [(n + 2 * pad - k) // st + 1 for n in sides]
        return None

    def _check_input(self, x: torch.Tensor) -> None:
        want = "(B, {}, H, W) images" if self.dims == 2 else "(B, {}, T, H, W) clips"
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {want.format(self.in_channels)}, got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the `n_layers + 1` stages (after its activation), then the logits: what GAN
        feature matching compares (every entry but the last). The noised input is not an entry (as the
        official `res[1:]`)."""
        self._check_input(x)
        x = self.noise(x)
        out = []
        for i, layer in enumerate(self.main, 1):
            x = layer(x)
            if i in self._stage_ends:
                out.append(x)
        return out + [x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.main(self.noise(x))


@configurable
class NLayerDiscriminator(_PatchGAN):
    """(B, in_channels, H, W) images in [-1, 1] -> (B, 1, H', W') real/fake logits, one per patch. `noise`:
    OmniTokenizer's learned input noise (`--apply_noise`)."""

    dims = 2

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 padding: int = 1, noise: bool = False) -> None:
        super().__init__()
        self._build(in_channels, ndf, n_layers, norm, padding, noise)


@configurable
class NLayerDiscriminator3D(_PatchGAN):
    """(B, in_channels, T, H, W) clips in [-1, 1] -> (B, 1, T', H', W') real/fake logits, one per space-time
    patch: it sees motion, which a per-frame discriminator cannot. `noise`: OmniTokenizer's learned input noise
    (`--apply_noise`); `norm_logits`: its norm + LeakyReLU(0.2) after the last conv."""

    dims = 3

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 padding: int = 2, noise: bool = False, norm_logits: bool = False) -> None:
        super().__init__()
        self._build(in_channels, ndf, n_layers, norm, padding, noise, norm_logits)
