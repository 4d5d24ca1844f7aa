"""Reading another project's PyTorch Lightning checkpoint without running its code.

`torch.load(weights_only=True)` admits tensors and plain containers only; the one class added to that list is
`argparse.Namespace`, which Lightning modules built from command-line arguments pickle as their hyperparameters
(OmniTokenizer, LARP). A checkpoint whose pickle needs any other class is refused, naming it; nothing is
imported or executed. `config_from_file` reads a vistok tokenizer config (a `vistok fit` YAML or an export's
config.json) to build the model an import is checked against; `load_mapped` and `write_export` are the last
steps both video importers share.
"""

from __future__ import annotations

import argparse
import inspect
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class ImportRefused(ValueError):
    """A checkpoint that cannot be imported as asked; the message says why, and nothing was written."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict (a `state_dict` key at least), read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ImportRefused(f"{path}: the checkpoint's pickle needs code to load, which vistok never runs "
                            f"({str(e).splitlines()[-1] if str(e) else 'unpickling refused'}). Re-save its "
                            "state_dict alone with torch.save in the project's own environment.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ImportRefused(f"{path}: not a readable PyTorch checkpoint (truncated or damaged?): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ImportRefused(f"{path}: not a Lightning checkpoint (no 'state_dict' dict at the top level)")
    return ckpt


def hyperparameters(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The arguments the model was built with: `hyper_parameters.args` (a Namespace or a dict)."""
    hp = ckpt.get("hyper_parameters")
    args = hp.get("args", hp) if isinstance(hp, dict) else None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise ImportRefused(f"{path}: the checkpoint has no 'hyper_parameters.args' (the model's arguments)")
    return args


def _link(encoder: dict[str, Any], decoder: dict[str, Any], decoder_cls: type) -> None:
    """The links `vistok fit` applies: the decoder takes these arguments from the encoder."""
    names = inspect.signature(decoder_cls.__init__).parameters
    for src, dst in (("image_size", "image_size"), ("token_dim", "token_dim"), ("in_channels", "out_channels"),
                     ("num_frames", "num_frames"), ("num_tokens", "num_tokens")):
        if src in encoder and dst in names:
            decoder[dst] = encoder[src]


def config_from_file(path: str | Path) -> dict[str, Any]:
    """The tokenizer's {"class_path", "init_args"} from a `vistok fit` YAML (model.tokenizer) or an export's
    config.json (model), with the encoder's values linked into the decoder as `vistok fit` does."""
    import yaml

    from vistok.configurable import _allowed

    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ImportRefused(f"{path}: cannot read the config ({e})") from None
    model = data.get("model") if isinstance(data, dict) else None
    tok = model.get("tokenizer", model) if isinstance(model, dict) else None
    if isinstance(tok, dict) and "init_args" in tok and "class_path" not in tok:
        tok = None
    try:
        enc = tok["init_args"]["encoder"]["init_args"]
        dec_node = tok["init_args"]["decoder"]
        dec_cls = _allowed(dec_node["class_path"])
    except (KeyError, TypeError):
        raise ImportRefused(f"{path}: no tokenizer with an encoder and a decoder under 'model' "
                            "(model.tokenizer.init_args.encoder / .decoder)") from None
    if dec_cls is not None:
        dec_node.setdefault("init_args", {})
        _link(enc, dec_node["init_args"], dec_cls)
    return tok


def load_mapped(tokenizer: Any, mapped: dict[str, torch.Tensor], where: str) -> Any:
    """Load a mapped state dict after checking every name and shape against the model (refusing, naming `where`,
    a missing, unexpected or misshapen tensor); the model in eval mode."""
    from vistok.loading import check_weights

    try:
        check_weights(tokenizer, mapped, where)
    except ValueError as e:
        raise ImportRefused(str(e)) from None
    tokenizer.load_state_dict(mapped, strict=True)
    return tokenizer.eval()


def write_export(build: Any, family: str, checkpoint: str, output: str, config: str | None = None,
                 overwrite: bool = False) -> Path:
    """A vistok export of `build(checkpoint, config)` at `output`; a non-empty output is refused before the
    (slow) build, and nothing is written when the build refuses the checkpoint."""
    from vistok.saving import save_pretrained

    out = Path(output)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another output directory or pass "
                              "--overwrite (overwrite=True) to replace it")
    tokenizer = build(checkpoint, config)
    return save_pretrained(tokenizer, out, source=f"{family} checkpoint {checkpoint}", overwrite=overwrite)
