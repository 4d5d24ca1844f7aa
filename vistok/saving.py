"""Saving a tokenizer: the export directory (Hugging-Face style, no pickle) and its model card.

`save_pretrained(tokenizer, path)` writes the layout that `vistok.loading` reads back (described there);
`export_checkpoint(ckpt, path)` does it for a `vistok fit` checkpoint, with what the checkpoint knows about its
training in the card. Writes are atomic: a temporary directory renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file, save_model

import vistok
from vistok.configurable import to_config
from vistok.loading import is_export_dir, load_checkpoint
from vistok.token_spec import input_spec, token_spec
from vistok.training_record import FLATTERED_RFID, trained_on_fid_network, training_info


def _model_card(config: dict[str, Any], spec: dict[str, Any], source: str | None,
                training: dict[str, Any] | None = None, evaluation: list[dict[str, Any]] | None = None) -> str:
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
        if trained_on_fid_network(training["losses"]):
            lines.append(f"- **rFID caveat**: {FLATTERED_RFID}")
    lines += ["", "## Metrics", ""]
    lines += _metrics_text(evaluation) if evaluation else [
        "Not measured at export. `vistok eval --model <this dir> --input <images> --output <dir>` writes rFID, PSNR, "
        "SSIM, LPIPS per token count (metrics.json); `vistok export --eval <that metrics.json>` puts them here."]
    lines += ["", "## Use", "",
              "```python", "from vistok import Tokenizer, load_images", 'tok = Tokenizer.from_pretrained("<this dir>")',
              *(["videos = ...   # float (B, 3, T, H, W) in [-1, 1], T as tokens.json's input.frames says",
                 "ids = tok.encode(videos)   # (B, K) int64; tokens.json's token_grid gives the layout"]
                if input_spec(spec).is_video else
                ["images = load_images(paths, tok.image_size)   # (B, 3, H, W) in [-1, 1]",
                 "ids = tok.encode(images)   # (B, K) int64"]),
              "recon = tok.decode(ids)", "```", ""]
    return "\n".join(lines)


def _metrics_text(evaluation: list[dict[str, Any]]) -> list[str]:
    """Per evaluation result: its input, its headline numbers and, for each metric, the protocol it was measured
    under (network and weights sha256, resolution and resize, image / clip count, reference statistics)."""
    from vistok.metrics.protocol import headline, is_video, protocol_lines

    lines: list[str] = []
    for result in evaluation:
        count = f"{result['clips']} clips" if is_video(result) else f"{result.get('num_images')} images"
        lines += [f"### {result.get('input', '?')} ({count}; {result.get('source', 'evaluation')})", ""]
        numbers = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in headline(result).items() if v is not None)
        lines += [f"- {numbers}" if numbers else "- no tokenizer rows", "", "Protocol, per metric:", ""]
        protocol = protocol_lines(result.get("protocol"))
        lines += [f"- {line}" for line in protocol] or ["- not recorded (a result written by an older vistok)"]
        lines += [f"- note: {note}" for note in result.get("notes") or []]
        lines.append("")
    return lines[:-1]


def _losses_text(losses: dict[str, Any]) -> str:
    """One line for the card: e.g. `L2 1.0, quantizer 1.0, perceptual inception x 0.1, GAN (NLayerDiscriminator,
    hinge, adaptive weight x 0.1, from step 300)`."""
    rec = losses.get("reconstruction") or {}
    parts = (["rectified flow"] if rec.get("kind") == "flow" else
             [f"MaskGIT-VQGAN proxy-code cross-entropy {rec.get('weight')} (TiTok stage 1)"]
             if rec.get("kind") == "proxy_codes" else
             [f"{name} {rec[key]}" for name, key in (("L1", "l1"), ("L2", "l2"), ("mean colour", "colour"))
              if rec.get(key)])
    parts.append(f"quantizer {losses.get('quantizer_weight')}")
    if losses.get("perceptual"):
        parts.append(f"perceptual {losses['perceptual']['kind']} x {losses['perceptual']['weight']}")
    adv = losses.get("adversarial")
    if adv:
        discs = [(key, (adv.get(key) or {}).get("class_path", "?").rsplit(".", 1)[-1])
                 for key in ("discriminator", "video_discriminator") if adv.get(key)]
        for key, disc in discs:
            value = adv.get("weight") if key == "discriminator" else adv.get("video_weight")
            weight = f"{'adaptive weight x ' if adv.get('adaptive') else 'weight '}{value}"
            lecam = f", LeCAM {adv['lecam_weight']}" if adv.get("lecam_weight") else ""
            parts.append(f"GAN ({disc}, {adv.get('generator_loss')}, {weight}{lecam}, from step "
                         f"{adv.get('start_step')})")
        if adv.get("feature_matching"):
            parts.append(f"GAN feature matching x {adv['feature_matching']}")
    return ", ".join(parts)


def _input_text(spec: dict[str, Any]) -> str:
    inputs = input_spec(spec)
    if inputs.is_video:
        return f"{inputs.channels} x T x {inputs.height} x {inputs.width} (T = {inputs.frames})"
    if inputs.is_square and inputs.channels == 3:
        return f"{inputs.height} px images"
    return f"{inputs.channels} x {inputs.height} x {inputs.width} images (channels x height x width)"


def save_pretrained(tokenizer: Any, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None,
                    source: str | None = None, overwrite: bool = False,
                    training: dict[str, Any] | None = None,
                    evaluation: list[dict[str, Any]] | None = None) -> Path:
    """Write the export directory. `state_dict` overrides the module's own weights (EMA weights); `training`
    (what a checkpoint knows: steps, epochs, data; see `vistok.training_record.training_info`) goes in the card,
    and so do `evaluation`'s results (`vistok eval` metrics.json contents, `vistok.metrics.protocol.load_result`):
    their headline numbers and each metric's protocol.

    The files are written to a temporary directory beside `path`, which is then renamed into place, so an
    interrupted export leaves no half-written directory. A non-empty `path` is refused unless `overwrite`,
    and even then only when it is an export directory (its old files are moved aside, the new directory
    renamed in, the old one deleted: readers see the old or the new export, never a mixture).
    """
    path = Path(path)
    if getattr(tokenizer, "continuous", False):
        raise ValueError(f"cannot export to {path}: the tokenizer has a continuous KL bottleneck "
                         f"({type(tokenizer.quantizer).__name__}) and no codebook or token ids, which an export "
                         "directory describes (codebook.safetensors, tokens.json); load its fit checkpoint instead "
                         "(Tokenizer.from_pretrained(ckpt), encode_latents / decode_latents)")
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
        if training and training.get("losses"):  # read back by `vistok eval` (vistok.training_record.training_losses)
            config["training"] = {"losses": training["losses"]}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(tokenizer, str(tmp / "model.safetensors"))
        save_file({"codes": tokenizer.quantizer.codes().float().cpu().contiguous()},
                  str(tmp / "codebook.safetensors"))
        spec = token_spec(tokenizer)
        (tmp / "tokens.json").write_text(json.dumps(spec, indent=2))
        (tmp / "README.md").write_text(_model_card(config, spec, source, training, evaluation))
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


def export_checkpoint(ckpt: str | Path, output: str | Path, overwrite: bool = False,
                      evaluation: list[dict[str, Any]] | None = None) -> Path:
    """Write the export directory of a checkpoint (atomically; a non-empty `output` only with `overwrite`). A
    VAE's checkpoint (`vistok.decoders.kl_vae.KLAutoencoder`, configs/flextok_vae.yaml) is written as a diffusers
    `AutoencoderKL` directory (`save_pretrained`'s config.json + diffusion_pytorch_model.safetensors)."""
    output = Path(output)
    if output.is_dir() and any(output.iterdir()) and not overwrite:  # before the (slow) checkpoint load
        raise FileExistsError(f"{output} exists and is not empty; choose another --output or pass --overwrite "
                              "to replace it")
    tokenizer, raw = load_checkpoint(ckpt)
    from vistok.decoders.kl_vae import KLAutoencoder  # on demand: this module imports no model code otherwise

    if isinstance(tokenizer, KLAutoencoder):  # the VAE stage: the diffusers directory FlexTok configs read
        return tokenizer.save_diffusers(output, overwrite=overwrite)
    return save_pretrained(tokenizer, output, source=str(ckpt), overwrite=overwrite,
                           training=training_info(ckpt, raw), evaluation=evaluation)
