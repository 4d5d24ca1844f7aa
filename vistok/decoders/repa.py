"""REPA: representation alignment of a flow decoder's hidden patch tokens with a frozen feature network
("Representation Alignment for Generation: Training Diffusion Transformers Is Easier Than You Think", Yu et al.
2024), which FlexTok's paper uses on its rectified-flow decoder (DINOv2 features). FlexTok's training code is
not public: this follows REPA's own recipe (a 3-layer SiLU MLP projector, negative cosine similarity per
patch, averaged), applied to the patch tokens after decoder block `layer` (0-based).

The feature network is a TorchScript file given by path (`feature_path`), e.g. DINOv2 exported with
`torch.jit.trace`; it takes images (B, 3, S, S) (`feature_size`, ImageNet-normalised unless `normalize` is
"none") and returns patch features (B, L, C) or (B, C, h, w). It is frozen and kept out of `state_dict` (an
export records the path). Its feature grid is resized (bilinear) to the decoder's patch grid. A missing file is
refused when the decoder is built, before any training step.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vistok.configurable import configurable

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _Frozen:
    """Holds the feature network outside the module tree (no parameters, no state_dict entries)."""

    def __init__(self, path: Path) -> None:
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for p in self.net.parameters():
            p.requires_grad_(False)


@configurable
class REPA(nn.Module):
    def __init__(self, feature_path: str, feature_dim: int, layer: int = 1, weight: float = 1.0,
                 hidden: int = 2048, feature_size: int = 224, normalize: str = "imagenet") -> None:
        """`feature_dim`: C of the features; `weight`: the loss's factor; `hidden`: the projector's width."""
        super().__init__()
        path = Path(feature_path)
        if not path.is_file():
            raise FileNotFoundError(f"REPA feature network not found: feature_path={str(path)!r} (a TorchScript file "
                                    "of the frozen feature network, e.g. DINOv2 traced with torch.jit.trace); set "
                                    "decoder.repa.feature_path, or repa: null to train without REPA")
        if normalize not in ("imagenet", "none"):
            raise ValueError(f"normalize must be 'imagenet' or 'none', got {normalize!r}")
        self.features = _Frozen(path)
        self.feature_dim, self.layer, self.weight = feature_dim, layer, float(weight)
        self.hidden, self.feature_size, self.normalize = hidden, feature_size, normalize
        self.projector: nn.Module | None = None

    def build(self, width: int) -> None:
        """Create the projector for a decoder of this width (called by the decoder's constructor)."""
        self.projector = nn.Sequential(nn.Linear(width, self.hidden), nn.SiLU(), nn.Linear(self.hidden, self.hidden),
                                       nn.SiLU(), nn.Linear(self.hidden, self.feature_dim))

    @torch.no_grad()
    def targets(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> features (B, gh * gw, C) on the decoder's patch grid."""
        net = self.features.net
        x = F.interpolate(images.float(), size=(self.feature_size, self.feature_size), mode="bilinear",
                          align_corners=False)
        x = (x + 1) / 2
        if self.normalize == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        if next(net.parameters(), x).device != x.device:
            net.to(x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            f = net(x).float()
        if f.ndim == 3:  # (B, L, C) on a square grid
            side = int(round(f.shape[1] ** 0.5))
            if side * side != f.shape[1]:
                raise ValueError(f"REPA features have {f.shape[1]} tokens, not a square grid (drop class/register "
                                 "tokens in the exported feature network)")
            f = rearrange(f, "b (h w) c -> b c h w", h=side)
        if f.shape[1] != self.feature_dim:
            raise ValueError(f"REPA features have {f.shape[1]} channels, feature_dim says {self.feature_dim}")
        f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
        return rearrange(f, "b c h w -> b (h w) c")

    def forward(self, hidden: torch.Tensor, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """hidden (B, L, D) decoder patch tokens -> weight * (-mean cosine similarity) with the features."""
        target = self.targets(images, grid)  # (B, L, C)
        pred = self.projector(hidden.float() if hidden.dtype != self.projector[0].weight.dtype else hidden)
        return -self.weight * F.cosine_similarity(pred.float(), target, dim=-1).mean()
