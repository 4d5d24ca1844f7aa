"""Reading a `vistok fit` checkpoint back into a `Tokenizer` (for export, encode and eval).

The checkpoint is read with `torch.load(weights_only=True)`, which refuses arbitrary pickled objects; the
tokenizer is rebuilt from the `vistok_config` the training system stores, through the same allow-list as an
export directory. `state_dict` holds the EMA weights when the run used EMAWeightAveraging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vistok.configurable import from_config
from vistok.hub import check_weights, is_export_dir, save_pretrained


def load_checkpoint(path: str | Path, map_location: str = "cpu"):
    tokenizer, _ = _load(path, map_location)
    return tokenizer


def _load(path: str | Path, map_location: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(Tokenizer in eval mode on map_location, the checkpoint's dictionary)."""
    path = Path(path)
    if path.is_dir():
        if is_export_dir(path):
            raise ValueError(f"{path} is already an export directory (config.json + model.safetensors), not a "
                             "checkpoint: load it with Tokenizer.from_pretrained, or copy the directory")
        raise ValueError(f"{path} is a directory, not a .ckpt checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable vistok checkpoint ({_load_error(e)}); a model is loaded from a "
                         "`vistok fit` checkpoint or from an export directory written by `vistok export`") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: no 'state_dict' in the checkpoint; was it written by `vistok fit`?")
    if "vistok_config" not in ckpt:
        raise ValueError(f"{path}: no 'vistok_config' in the checkpoint; was it written by `vistok fit`?")
    tokenizer = from_config(ckpt["vistok_config"], where=f"{path}:vistok_config")
    prefix = "tokenizer."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    check_weights(tokenizer, state, f"{path}:state_dict")
    tokenizer.load_state_dict(state)
    return tokenizer.to(map_location).eval(), ckpt


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return ckpt.get("vistok_training") if isinstance(ckpt, dict) else None


def trained_on_fid_network(losses: dict[str, Any] | None) -> bool:
    """Whether rFID's own network (the FID Inception) was a training loss, which flatters the model's rFID."""
    perceptual = (losses or {}).get("perceptual") or {}
    return perceptual.get("kind") == "inception"


FLATTERED_RFID = ("this model was trained with a perceptual loss on the FID Inception network, the network "
                  "rFID scores it with: its rFID is flattered (lower than the same reconstructions would get from "
                  "an independent network); compare PSNR/SSIM/LPIPS, or rFID only with models trained the same way")


def _load_error(e: Exception) -> str:
    """torch.load's weights_only refusal is a page advising `weights_only=False`; keep the one line that says
    what the file holds."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].strip().split(". ")[0].split("\n")[0]
        if "Unsupported global" in detail:
            return f"it holds pickled objects other than tensors, refused without unpickling: {detail}"
        return f"not a torch checkpoint file: {detail}"
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def load_tokenizer(path: str | Path, map_location: str = "cpu"):
    """An export directory or a .ckpt file -> Tokenizer in eval mode."""
    from vistok.hub import from_pretrained

    return from_pretrained(path, map_location)


def export_checkpoint(ckpt: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """Write the export directory of a checkpoint (atomically; a non-empty `output` only with `overwrite`)."""
    output = Path(output)
    if output.is_dir() and any(output.iterdir()) and not overwrite:  # before the (slow) checkpoint load
        raise FileExistsError(f"{output} exists and is not empty; choose another --output or pass --overwrite "
                              "to replace it")
    tokenizer, raw = _load(ckpt)
    return save_pretrained(tokenizer, output, source=str(ckpt), overwrite=overwrite,
                           training=training_info(ckpt, raw))
