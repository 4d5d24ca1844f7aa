"""Start a run from another run's tokenizer weights (a stage-2 config starting from stage 1).

`load_matching_weights(tokenizer, path)` reads an export directory (`model.safetensors`) or a `vistok fit`
checkpoint (its `tokenizer.*` state, EMA weights when the run kept them), loads every tensor whose name the
tokenizer has, and returns the names it lacked (missing: they keep their initialisation) and the names it
did not use (unexpected). A tensor whose shape differs is refused with its name: a silent partial load of a
resized layer is how a stage-2 run quietly starts from scratch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def read_tokenizer_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"init_from {path}: no model.safetensors (not a vistok export directory)")
        from safetensors.torch import load_file

        return load_file(str(weights), device="cpu")
    if not path.is_file():
        raise FileNotFoundError(f"init_from {path}: no such export directory or checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"init_from {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"init_from {path}: no 'state_dict' in the checkpoint; was it written by `vistok fit`?")
    prefix = "tokenizer."
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load_matching_weights(tokenizer: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load `path`'s tensors into `tokenizer` by name -> (missing, unexpected) names. Raises a ValueError
    naming the first tensor whose shape differs from the model's."""
    state = read_tokenizer_state(path)
    own = tokenizer.state_dict()
    for name, tensor in state.items():
        if name in own and tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(f"init_from {path}: tensor {name!r} has shape {tuple(tensor.shape)}, the model "
                             f"expects {tuple(own[name].shape)}")
    matching = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items() if k in own}
    tokenizer.load_state_dict(matching, strict=False)
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    return missing, unexpected
