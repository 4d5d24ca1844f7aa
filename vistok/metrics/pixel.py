"""Per-image PSNR and SSIM (torchmetrics; SSIM of Wang et al. 2004, Gaussian window 11, sigma 1.5) and LPIPS
(Zhang et al. 2018), as running means over a stream of batches.

Both images are first quantised to 8 bits (what a saved PNG holds, `vistok.data.images.to_uint8`). PSNR is
`vistok.metrics.psnr.per_image_psnr`, the one PSNR vistok reports (averaged per image, as TiTok/FlexTok tables
do, not computed from the dataset-wide MSE; capped at 100 dB); SSIM runs on the 8-bit levels scaled to [0, 1].

LPIPS: LPIPS-VGG and LPIPS-Alex (v0.1, `vistok.metrics.lpips`, weights from the cache) on the float images at
their own resolution (no resize, no 8-bit rounding, as the reference implementation is used), reported as
`lpips_vgg` / `lpips_alex`. A trunk that cannot run at the images' size (AlexNet below 31 px) is null with a
note. `lpips=PATH` (CLI `--lpips PATH`) adds any TorchScript LPIPS network `net(x, y)` -> one distance per image
as the `lpips` column (null without it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from vistok.data.images import to_uint8
from vistok.metrics.psnr import per_image_psnr

log = logging.getLogger("vistok.metrics")
LPIPS_SKIPPED = "LPIPS-VGG / LPIPS-Alex skipped (asked for: --no-lpips)"


def lpips_networks(size: int, device: str | torch.device = "cpu") -> tuple[dict[str, torch.nn.Module], list[str]]:
    """{"lpips_vgg": LPIPS("vgg"), "lpips_alex": LPIPS("alex")} on `device` for images of side `size`, and the
    notes for any trunk that cannot run at that size. Missing weights raise `vistok.weights.WeightsMissing`."""
    from vistok.metrics.lpips import LPIPS, MIN_SIZE, NETS

    nets, notes = {}, []
    for net in NETS:
        if size < MIN_SIZE[net]:
            notes.append(f"LPIPS-{net} skipped: it needs images of at least {MIN_SIZE[net]} px, these are {size} px")
            continue
        nets[f"lpips_{net}"] = LPIPS(net).to(device)
    return nets, notes


def lpips_protocol(nets: dict[str, torch.nn.Module], images: int, size: int) -> dict[str, dict]:
    """What each LPIPS number was measured with."""
    return {k: {**net.info, "version": "v0.1", "input": "float images in [-1, 1]",
                "resolution": f"{size}x{size} (native, no resize)", "images": images} for k, net in nets.items()}


def quantize01(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> 8-bit levels as float in [0, 1]."""
    return to_uint8(images).float() / 255


def psnr_ssim(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM, each (B,), for (B, 3, H, W) images in [-1, 1]."""
    if real.shape != fake.shape:
        raise ValueError(f"real and reconstructed images differ in shape: {tuple(real.shape)} vs "
                         f"{tuple(fake.shape)}")
    fake = fake.to(real.device)
    x, y = quantize01(real), quantize01(fake)
    kernel = min(11, x.shape[-1] - (1 - x.shape[-1] % 2), x.shape[-2] - (1 - x.shape[-2] % 2))
    ssim = structural_similarity_index_measure(y, x, data_range=1.0, reduction="none", kernel_size=kernel)
    return per_image_psnr(fake, real), ssim


def colour_error(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute difference of each image's mean R, G and B, in 8-bit levels (0..255): a
    reconstruction that turns a green or blue picture grey scores tens of levels, a faithful one a few."""
    x, y = to_uint8(real).float(), to_uint8(fake.to(real.device)).float()
    return (x.mean((2, 3)) - y.mean((2, 3))).abs().mean(1)


class RunningMean:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, values: torch.Tensor) -> None:
        self.total += float(values.double().sum())
        self.count += values.numel()

    def compute(self) -> float | None:
        return self.total / self.count if self.count else None


def load_lpips(path: str | Path | None, device: str | torch.device = "cpu") -> torch.jit.ScriptModule | None:
    """The TorchScript LPIPS network at `path` (an override beside the built-in LPIPS), or None."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"--lpips {path}: file not found (a TorchScript LPIPS module net(x, y))")
    return torch.jit.load(str(path), map_location=device).eval()


class PixelMetrics:
    """Running means of PSNR, SSIM, colour error (`colour_error`), LPIPS of each network in `lpips_nets`
    (`lpips_networks`) and of the TorchScript `lpips` when given."""

    def __init__(self, lpips: torch.jit.ScriptModule | None = None,
                 lpips_nets: dict[str, torch.nn.Module] | None = None) -> None:
        self.lpips_net = lpips
        self.psnr, self.ssim, self.lpips = RunningMean(), RunningMean(), RunningMean()
        self.colour = RunningMean()
        self.nets = dict(lpips_nets or {})
        self.perceptual = {k: RunningMean() for k in ("lpips_vgg", "lpips_alex")}

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        psnr, ssim = psnr_ssim(real, fake)
        self.psnr.update(psnr)
        self.ssim.update(ssim)
        self.colour.update(colour_error(real, fake))
        if self.lpips_net is not None:
            dev = next(iter(self.lpips_net.parameters()), real).device
            with torch.inference_mode():
                d = self.lpips_net(real.to(dev).float(), fake.to(dev).float())
            self.lpips.update(d.reshape(real.shape[0], -1).mean(1))
        for key, net in self.nets.items():
            dev = next(iter(net.parameters())).device
            with torch.inference_mode():
                self.perceptual[key].update(net(real.to(dev).float(), fake.to(dev).float()))

    def compute(self) -> dict[str, float | None]:
        return {"psnr": self.psnr.compute(), "ssim": self.ssim.compute(), "lpips": self.lpips.compute(),
                **{k: m.compute() for k, m in self.perceptual.items()}, "colour_error": self.colour.compute()}
