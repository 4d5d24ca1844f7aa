"""Export directories (Hugging-Face style, no pickle): save_pretrained / from_pretrained.

Layout (DESIGN.md, Contracts):
  config.json            {"vistok_version", "model": {"class_path", "init_args"}}
  model.safetensors      weights (EMA weights when the checkpoint has them)
  codebook.safetensors   {"codes": (V, d) float32}, implicit FSQ/LFQ codebooks included
  tokens.json            vocab size, max tokens, order, special ids after the codebook, the input spec
                         (`vistok.token_spec`)
  README.md              a short generated model card
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file, save_model

import vistok
from vistok.configurable import from_config, import_model_classes, to_config
from vistok.jsonfile import read_json
from vistok.token_spec import SPECIAL_TOKENS, input_spec, token_spec

# Kept importable from here for older callers: they moved to their own modules.
__all__ = ["SPECIAL_TOKENS", "check_weights", "from_pretrained", "import_model_classes", "is_export_dir",
           "read_json", "save_pretrained", "token_spec"]

def _model_card(config: dict[str, Any], spec: dict[str, Any], source: str | None,
                training: dict[str, Any] | None = None) -> str:
    model = config["model"]["init_args"]
    parts = {k: model[k]["class_path"].rsplit(".", 1)[-1] for k in ("encoder", "quantizer", "decoder")}
    drop = model.get("token_dropout")
    lines = [
        "# vistok tokenizer",
        "",
        f"- encoder: {parts['encoder']}, quantizer: {parts['quantizer']}, decoder: {parts['decoder']}",
        f"- token dropout: {drop['class_path'].rsplit('.', 1)[-1] if drop else 'none'}",
        f"- input: {_input_text(spec)}; tokens: up to {spec['max_tokens']} ({spec['order']})",
        f"- codebook: {spec['codebook_size']} codes; vocabulary with special tokens: {spec['vocab_size']}",
        f"- vistok version: {config['vistok_version']}",
    ]
    if source:
        lines.append(f"- exported from: {source}")
    lines += ["", "## Training", ""]
    training = training or {}
    if not training:
        lines.append("- not recorded (exported from a model in memory, not from a `vistok fit` checkpoint)")
    for key, label in (("global_step", "optimizer steps"), ("epoch", "epoch at save (0-based)"),
                       ("trained_with", "trained with"), ("data_train", "training data"),
                       ("data_val", "validation data"), ("data_image_size", "training image size"),
                       ("config", "run config")):
        if training.get(key) is not None:
            lines.append(f"- {label}: {training[key]}")
    if training and training.get("data_train") is None:
        lines.append("- training data: not recorded (no config.yaml beside the checkpoint's run)")
    if training.get("losses"):
        lines.append(f"- losses: {_losses_text(training['losses'])}")
        from vistok.checkpoint import FLATTERED_RFID, trained_on_fid_network

        if trained_on_fid_network(training["losses"]):
            lines.append(f"- **rFID caveat**: {FLATTERED_RFID}")
    lines += ["", "## Metrics", "",
              "Not measured at export. `vistok eval --model <this dir> --input <images> --output <dir>` writes rFID, "
              "PSNR, SSIM per token count (metrics.json).",
              "", "## Use", "",
              "```python", "from vistok import Tokenizer, load_images", 'tok = Tokenizer.from_pretrained("<this dir>")',
              *(["videos = ...   # float (B, 3, T, H, W) in [-1, 1], T as tokens.json's input.frames says",
                 "ids = tok.encode(videos)   # (B, K) int64; tokens.json's token_grid gives the layout"]
                if input_spec(spec).is_video else
                ["images = load_images(paths, tok.image_size)   # (B, 3, H, W) in [-1, 1]",
                 "ids = tok.encode(images)   # (B, K) int64"]),
              "recon = tok.decode(ids)", "```", ""]
    return "\n".join(lines)


def _losses_text(losses: dict[str, Any]) -> str:
    """One line for the card: e.g. `L2 1.0, quantizer 1.0, perceptual inception x 0.1, GAN (NLayerDiscriminator,
    hinge, adaptive weight x 0.1, from step 300)`."""
    rec = losses.get("reconstruction") or {}
    parts = (["rectified flow"] if rec.get("kind") == "flow" else
             [f"{name} {rec[key]}" for name, key in (("L1", "l1"), ("L2", "l2"), ("mean colour", "colour"))
              if rec.get(key)])
    parts.append(f"quantizer {losses.get('quantizer_weight')}")
    if losses.get("perceptual"):
        parts.append(f"perceptual {losses['perceptual']['kind']} x {losses['perceptual']['weight']}")
    adv = losses.get("adversarial")
    if adv:
        disc = adv.get("discriminator", {}).get("class_path", "?").rsplit(".", 1)[-1]
        weight = f"{'adaptive weight x ' if adv.get('adaptive') else 'weight '}{adv.get('weight')}"
        lecam = f", LeCAM {adv['lecam_weight']}" if adv.get("lecam_weight") else ""
        parts.append(f"GAN ({disc}, {adv.get('generator_loss')}, {weight}{lecam}, from step {adv.get('start_step')})")
    return ", ".join(parts)


def _input_text(spec: dict[str, Any]) -> str:
    inputs = input_spec(spec)
    if inputs.is_video:
        return f"{inputs.channels} x T x {inputs.height} x {inputs.width} (T = {inputs.frames})"
    if inputs.is_square and inputs.channels == 3:
        return f"{inputs.height} px images"
    return f"{inputs.channels} x {inputs.height} x {inputs.width} images (channels x height x width)"


def is_export_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def save_pretrained(tokenizer: Any, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None,
                    source: str | None = None, overwrite: bool = False,
                    training: dict[str, Any] | None = None) -> Path:
    """Write the export directory. `state_dict` overrides the module's own weights (EMA weights); `training`
    (what a checkpoint knows: steps, epochs, data; see `vistok.checkpoint.training_info`) goes in the card.

    The files are written to a temporary directory beside `path`, which is then renamed into place, so an
    interrupted export leaves no half-written directory. A non-empty `path` is refused unless `overwrite`,
    and even then only when it is an export directory (its old files are moved aside, the new directory
    renamed in, the old one deleted: readers see the old or the new export, never a mixture).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; choose another output directory or pass "
                                  "--overwrite (overwrite=True) to replace it")
        if not is_export_dir(path):
            raise FileExistsError(f"{path} is not empty and not a vistok export directory; refusing to replace it "
                                  "even with --overwrite")
    if state_dict is not None:
        tokenizer.load_state_dict(state_dict)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        config: dict[str, Any] = {"vistok_version": vistok.__version__, "model": to_config(tokenizer)}
        if training and training.get("losses"):  # read back by `vistok eval` (vistok.checkpoint.training_losses)
            config["training"] = {"losses": training["losses"]}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(tokenizer, str(tmp / "model.safetensors"))
        save_file({"codes": tokenizer.quantizer.codes().float().cpu().contiguous()},
                  str(tmp / "codebook.safetensors"))
        spec = token_spec(tokenizer)
        (tmp / "tokens.json").write_text(json.dumps(spec, indent=2))
        (tmp / "README.md").write_text(_model_card(config, spec, source, training))
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it 0700; an export is as readable as any directory
        for f in tmp.iterdir():  # safetensors writes its files 0600; make them 0644 (subject to the umask)
            os.chmod(f, 0o666 & ~mask)
        old = None
        if path.is_dir() and any(path.iterdir()):
            old = path.with_name(f"{tmp.name}.old")
            os.replace(path, old)
        os.replace(tmp, path)  # onto a missing or empty directory: atomic
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


EXPORT_HINT = ("write one from a `vistok fit` checkpoint with `vistok export --model last.ckpt --output DIR`, "
               "or pass the .ckpt file itself")


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild a tokenizer from an export directory, or from a Lightning `.ckpt` written by `vistok fit`
    (read with `torch.load(weights_only=True)`: no arbitrary pickled objects); never unpickles anything
    else; returns it in eval mode on `map_location`.

    Every tensor of model.safetensors must match the model's parameter or buffer of the same name in shape
    and kind (a floating tensor may differ in precision; it is cast) and be finite; a ValueError names the
    tensor otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix in (".safetensors", ".json"):
            raise FileNotFoundError(f"{path} is one file of an export directory: pass the directory "
                                    f"({path.parent}) instead")
        from vistok.checkpoint import load_checkpoint

        return load_checkpoint(path, map_location)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a vistok export directory nor a `vistok fit` .ckpt")
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: {path} is not a vistok export directory; {EXPORT_HINT}")
    config = read_json(cfg_file, f"{path} is not a vistok export directory; {EXPORT_HINT}")
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{cfg_file}: missing key 'model'")
    tokenizer = from_config(config["model"], where=f"{cfg_file}:model")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
    check_weights(tokenizer, state, str(weights))
    tokenizer.load_state_dict(state, strict=True)
    return tokenizer.to(map_location).eval()


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
