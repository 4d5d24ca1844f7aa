"""What a model was trained with, as a `vistok fit` checkpoint or an export's config.json records it.

Read by the model card (`vistok.saving`) and by `vistok eval`, which discloses a flattered rFID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLATTERED_RFID = ("this model was trained with a perceptual loss on the FID Inception network, the network "
                  "rFID scores it with: its rFID is flattered (lower than the same reconstructions would get from "
                  "an independent network); compare PSNR/SSIM/LPIPS, or rFID only with models trained the same way")


def trained_on_fid_network(losses: dict[str, Any] | None) -> bool:
    """Whether rFID's own network (the FID Inception) was a training loss, which flatters the model's rFID."""
    perceptual = (losses or {}).get("perceptual") or {}
    return perceptual.get("kind") == "inception"


def training_info(path: str | Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a `vistok fit` checkpoint knows about its training, for the model card: steps, epochs, the
    Lightning version, and the data from the run's resolved config (`config.yaml`, which LightningCLI writes in
    the run directory, one level above `checkpoints/`) when it is there."""
    info: dict[str, Any] = {"global_step": ckpt.get("global_step"), "epoch": ckpt.get("epoch"),
                            "trained_with": (f"lightning {ckpt['pytorch-lightning_version']}"
                                             if "pytorch-lightning_version" in ckpt else None),
                            "losses": ckpt.get("vistok_training")}
    path = Path(path).resolve()
    for config in (path.parent / "config.yaml", path.parent.parent / "config.yaml"):
        if config.is_file():
            try:
                import yaml

                doc = yaml.safe_load(config.read_text())
            except Exception:  # a damaged or foreign config.yaml: the card just says less
                continue
            data = doc.get("data") if isinstance(doc, dict) else None
            if isinstance(data, dict):
                info.update(data_train=data.get("train"), data_val=data.get("val"),
                            data_image_size=data.get("image_size"), config=str(config))
            break
    return info


def training_losses(path: str | Path) -> dict[str, Any] | None:
    """The losses a model was trained with (`TokenizerSystem.training_record`), from an export directory's
    config.json (`training.losses`) or a `vistok fit` checkpoint; None when not recorded (older exports)."""
    path = Path(path)
    if path.is_dir():
        from vistok.jsonfile import read_json

        config = read_json(path / "config.json", f"{path} is not a vistok export directory")
        training = config.get("training") if isinstance(config, dict) else None
        return training.get("losses") if isinstance(training, dict) else None
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return ckpt.get("vistok_training") if isinstance(ckpt, dict) else None
