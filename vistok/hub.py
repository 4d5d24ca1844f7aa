"""Export directories (Hugging-Face style, no pickle): save_pretrained / from_pretrained.

Layout (DESIGN.md, Contracts):
  config.json            {"vistok_version", "model": {"class_path", "init_args"}}
  model.safetensors      weights (EMA weights when the checkpoint has them)
  codebook.safetensors   {"codes": (V, d) float32}, implicit FSQ/LFQ codebooks included
  tokens.json            vocab size, max tokens, order, special ids after the codebook, image size
  README.md              a short generated model card
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file, save_model

import vistok
from vistok.configurable import from_config, to_config

SPECIAL_TOKENS = ("bos", "eos", "pad", "mask")


def token_spec(tokenizer: Any) -> dict[str, Any]:
    v = tokenizer.codebook_size
    return {
        "codebook_size": v,
        "vocab_size": v + len(SPECIAL_TOKENS),
        "max_tokens": tokenizer.max_tokens,
        "order": "coarse-to-fine" if tokenizer.token_dropout is not None else "fixed-length",
        "special_tokens": {name: v + i for i, name in enumerate(SPECIAL_TOKENS)},
        "image_size": tokenizer.image_size,
        "token_dtype": "uint16" if v <= 65536 else "int32",
    }


def _model_card(config: dict[str, Any], spec: dict[str, Any], source: str | None) -> str:
    model = config["model"]["init_args"]
    parts = {k: model[k]["class_path"].rsplit(".", 1)[-1] for k in ("encoder", "quantizer", "decoder")}
    drop = model.get("token_dropout")
    lines = [
        "# vistok tokenizer",
        "",
        f"- encoder: {parts['encoder']}, quantizer: {parts['quantizer']}, decoder: {parts['decoder']}",
        f"- token dropout: {drop['class_path'].rsplit('.', 1)[-1] if drop else 'none'}",
        f"- image size: {spec['image_size']} px; tokens: up to {spec['max_tokens']} ({spec['order']})",
        f"- codebook: {spec['codebook_size']} codes; vocabulary with special tokens: {spec['vocab_size']}",
        f"- vistok version: {config['vistok_version']}",
    ]
    if source:
        lines.append(f"- exported from: {source}")
    lines += ["", "```python", "from vistok import Tokenizer", 'tok = Tokenizer.from_pretrained("<this dir>")',
              "ids = tok.encode(images)   # (B, 3, H, W) in [-1, 1] -> (B, K) int64", "recon = tok.decode(ids)",
              "```", ""]
    return "\n".join(lines)


def save_pretrained(tokenizer: Any, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None,
                    source: str | None = None) -> Path:
    """Write the export directory. `state_dict` overrides the module's own weights (EMA weights)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        tokenizer.load_state_dict(state_dict)
    config = {"vistok_version": vistok.__version__, "model": to_config(tokenizer)}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    save_model(tokenizer, str(path / "model.safetensors"))
    save_file({"codes": tokenizer.quantizer.codes().float().cpu().contiguous()}, str(path / "codebook.safetensors"))
    spec = token_spec(tokenizer)
    (path / "tokens.json").write_text(json.dumps(spec, indent=2))
    (path / "README.md").write_text(_model_card(config, spec, source))
    return path


def read_json(path: Path, missing_hint: str) -> Any:
    """Parse a JSON file; a missing file or bad JSON raises an error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {missing_hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def import_model_classes() -> None:
    """Import every module that defines @configurable classes, so the allow-list is complete."""
    import vistok.decoders  # noqa: F401
    import vistok.quantizers  # noqa: F401
    import vistok.tokenizers  # noqa: F401


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild a tokenizer from an export directory; never unpickles; returns it in eval mode."""
    import_model_classes()

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: {path} is not a vistok export directory")
    config = read_json(cfg_file, f"{path} is not a vistok export directory")
    if "model" not in config:
        raise ValueError(f"{cfg_file}: missing key 'model'")
    tokenizer = from_config(config["model"], where=f"{cfg_file}:model")
    state = load_file(str(weights), device=str(map_location))
    missing, unexpected = tokenizer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match config.json (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return tokenizer.to(map_location).eval()
