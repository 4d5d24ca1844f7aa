"""Start a run from another run's tokenizer weights (a stage-2 config starting from stage 1).

`load_matching_weights(tokenizer, path)` reads an export directory (`model.safetensors`) or a `vistok fit`
checkpoint (its `tokenizer.*` state, EMA weights when the run kept them), loads every tensor whose name the
tokenizer has, and returns the names it lacked (missing: they keep their initialisation) and the names it
did not use (unexpected). A tensor whose shape differs is refused with its name: a silent partial load of a
resized layer is how a stage-2 run quietly starts from scratch.

`load_discriminator_weights(modules, path)` does the same for the discriminators (`discriminator.*`,
`video_discriminator.*` in a fit checkpoint's state): OmniTokenizer's stage 3 starts its video discriminator from
stage 2's (the official `--init_vdis keep`). Only a fit checkpoint has them; an export directory is refused.
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
    prefix = "tokenizer."
    return {k[len(prefix):]: v for k, v in read_checkpoint_state(path).items() if k.startswith(prefix)}


def read_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A `vistok fit` checkpoint's whole state_dict (tokenizer, discriminators, ...), read with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from {path}: no such export directory or checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"init_from {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"init_from {path}: no 'state_dict' in the checkpoint; was it written by `vistok fit`?")
    return ckpt["state_dict"]


def load_matching_weights(tokenizer: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load `path`'s tensors into `tokenizer` by name -> (missing, unexpected) names. Raises a ValueError
    naming the first tensor whose shape differs from the model's."""
    _, missing, unexpected = _load_by_name(tokenizer, read_tokenizer_state(path), path)
    return missing, unexpected


def _load_by_name(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path,
                  prefix: str = "") -> tuple[int, list[str], list[str]]:
    """Load the tensors of `state` whose names `module` has -> (how many, missing, unexpected names); a shape
    mismatch is refused naming the tensor (`prefix` + its name, as the checkpoint spells it)."""
    own = module.state_dict()
    for k, tensor in state.items():
        if k in own and tuple(tensor.shape) != tuple(own[k].shape):
            raise ValueError(f"init_from {path}: tensor '{prefix}{k}' has shape {tuple(tensor.shape)}, the model "
                             f"expects {tuple(own[k].shape)}")
    matching = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items() if k in own}
    module.load_state_dict(matching, strict=False)
    return len(matching), sorted(k for k in own if k not in state), sorted(k for k in state if k not in own)


def load_discriminator_weights(modules: dict[str, nn.Module | None],
                               path: str | Path) -> dict[str, tuple[int, list[str], list[str]]]:
    """Load each discriminator of `modules` (name -> module or None: `discriminator`, `video_discriminator`)
    from the fit checkpoint `path`, matching its `<name>.*` tensors by name and shape -> per name (tensors loaded,
    missing, unexpected; a discriminator only the checkpoint has comes back with all its tensors unexpected).
    Raises when `path` is an export directory (no discriminator there), when the checkpoint has none of a
    discriminator's weights (its run had no such discriminator), and on a shape mismatch (naming the tensor): any
    of these would start the discriminator afresh while the config says it continues."""
    path = Path(path)
    absent = [name for name, m in modules.items() if m is None]
    modules = {name: m for name, m in modules.items() if m is not None}
    if not modules:
        raise ValueError("init_discriminators: the system has no discriminator to initialise")
    if path.is_dir():
        raise ValueError(f"init_from {path}: init_discriminators needs a `vistok fit` checkpoint (.ckpt); an export "
                         f"directory holds the tokenizer only, no discriminator weights")
    state = read_checkpoint_state(path)
    report = {}
    for name, module in modules.items():
        prefix = f"{name}."
        theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not theirs:
            held = sorted({k.split(".", 1)[0] for k in state if "discriminator" in k.split(".", 1)[0]})
            raise ValueError(f"init_from {path}: the checkpoint has no {name!r} weights (it holds "
                             f"{held or 'no discriminator'}); its run trained without this discriminator")
        report[name] = _load_by_name(module, theirs, path, prefix)
    for name in absent:  # a discriminator the checkpoint has and this system has not: reported, not loaded
        theirs = sorted(k[len(name) + 1:] for k in state if k.startswith(f"{name}."))
        if theirs:
            report[name] = (0, [], theirs)
    return report
