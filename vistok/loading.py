"""Loading a tokenizer: the one way in, for an export directory and for a `vistok fit` checkpoint.

`load_tokenizer(path)` takes either; `Tokenizer.from_pretrained` calls it. Nothing is unpickled: an export is
safetensors + JSON, and a checkpoint is read with `torch.load(weights_only=True)`. The model is rebuilt from its
recorded config through the allow-list of `vistok.configurable` (vistok classes only), and every weight is
checked against the built model (`check_weights`) before it is loaded.

Export directory layout (written by `vistok.saving`; docs/architecture.md, "Export directory"):
  config.json            {"vistok_version", "model": {"class_path", "init_args"}, "training"?}
  model.safetensors      weights (EMA weights when the checkpoint has them)
  codebook.safetensors   {"codes": (V, d) float32}, implicit FSQ/LFQ codebooks included
  tokens.json            vocab size, max tokens, order, special ids after the codebook, the input spec
  README.md              a short generated model card
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vistok.configurable import from_config
from vistok.jsonfile import read_json

EXPORT_HINT = ("write one from a `vistok fit` checkpoint with `vistok export --model last.ckpt --output DIR`, "
               "or pass the .ckpt file itself")


def is_export_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def load_tokenizer(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """An export directory or a `vistok fit` .ckpt -> Tokenizer in eval mode on `map_location`.

    Every tensor of the weights must match the model's parameter or buffer of the same name in shape and kind
    (a floating tensor may differ in precision; it is cast) and be finite; a ValueError names the tensor
    otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix in (".safetensors", ".json"):
            raise FileNotFoundError(f"{path} is one file of an export directory: pass the directory "
                                    f"({path.parent}) instead")
        return load_checkpoint(path, map_location)[0]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a vistok export directory nor a `vistok fit` .ckpt")
    return _load_export(path).to(map_location).eval()


def _weight_elements(weights: Path) -> int:
    """Numbers held by a safetensors file, from its header (nothing is loaded)."""
    import math

    from safetensors import safe_open

    try:
        with safe_open(str(weights), "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None


def _build(config: Any, where: str, weight_elements: int) -> Any:
    """Build the model a config names within a memory budget set by its weights (`vistok.build_budget`): an
    untrusted config cannot allocate more than its weights justify before they are compared with it."""
    from vistok.build_budget import BuildBudget, weights_budget

    with BuildBudget(weights_budget(weight_elements), where):
        return from_config(config, where=where)


def _load_export(path: Path) -> Any:
    from safetensors.torch import load_file

    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: {path} is not a vistok export directory; {EXPORT_HINT}")
    config = read_json(cfg_file, f"{path} is not a vistok export directory; {EXPORT_HINT}")
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{cfg_file}: missing key 'model'")
    tokenizer = _build(config["model"], f"{cfg_file}:model", _weight_elements(weights))
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
    check_weights(tokenizer, state, str(weights))
    tokenizer.load_state_dict(state, strict=True)
    return tokenizer


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """A `vistok fit` checkpoint -> (Tokenizer in eval mode on map_location, the checkpoint's dictionary).

    The tokenizer is rebuilt from the `vistok_config` the training system stores; `state_dict` holds the EMA
    weights when the run used EMAWeightAveraging."""
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
    elements = sum(v.numel() for v in ckpt["state_dict"].values() if isinstance(v, torch.Tensor))
    tokenizer = _build(ckpt["vistok_config"], f"{path}:vistok_config", elements)
    prefix = "tokenizer."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    check_weights(tokenizer, state, f"{path}:state_dict")
    tokenizer.load_state_dict(state)
    return tokenizer.to(map_location).eval(), ckpt


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


def upgrade_state_keys(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Rename, in place, the weights a submodule declares renamed (`legacy_state_keys`: {old: new}, relative
    to that submodule) when `state` has the old name and not the new one."""
    for prefix, sub in module.named_modules():
        for old, new in getattr(type(sub), "legacy_state_keys", {}).items():
            old, new = (f"{prefix}.{old}", f"{prefix}.{new}") if prefix else (old, new)
            if old in state and new not in state:
                state[new] = state.pop(old)


def check_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights that would load wrongly: missing or unexpected names, other shapes, integer data for a
    floating tensor (or the reverse), NaN or infinite values. Floating tensors are cast to the module's
    precision in place of `state`. Names an older vistok wrote are first renamed in place (a submodule's
    `legacy_state_keys`, {old: new})."""
    upgrade_state_keys(module, state)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: weights do not match config.json (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(f"{where}: tensor {name!r} has shape {tuple(got.shape)}, the model expects "
                             f"{tuple(want.shape)}")
        if got.dtype != want.dtype:
            if not (got.is_floating_point() and want.is_floating_point()):
                raise ValueError(f"{where}: tensor {name!r} has dtype {str(got.dtype)[6:]}, the model expects "
                                 f"{str(want.dtype)[6:]}")
            state[name] = got = got.to(want.dtype)
        if got.is_floating_point() and got.numel() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise ValueError(f"{where}: tensor {name!r} holds {bad} NaN or infinite values")
