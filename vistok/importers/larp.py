"""Import a released LARP tokenizer (hywang66/LARP) as a vistok video export.

The released tokenizers are Hugging Face mixin directories (`model.safetensors` + `config.json`, the
`LARPTokenizer` arguments); a training checkpoint (`{"model": {"args", "sd"}}`, read with weights_only=True)
works too. The model: `LARPEncoder` / `LARPDecoder` with `architecture="official"`, the stochastic VQ
(`StochasticVQQuantizer`, switched to deterministic: encoding is then a function of the clip, which the
official code does only after `set_vq_eval_deterministic`), and, when the checkpoint has one, the AR prior
(`LARPPrior`, used in training only). Options vistok does not build (learned patch positions, extra type
embeddings, a KL bottleneck, per-frame patches) are refused.

With `config`, the model is built from that vistok config instead, and every weight must fit it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from vistok.configurable import from_config
from vistok.importers.lightning_ckpt import ImportRefused, config_from_file, load_mapped, read_checkpoint, write_export

FAMILY = "LARP"
_GPTC_SIZES = {"gptc-l": (24, 16, 1024), "gptc-b": (12, 12, 768), "gptc-m": (12, 8, 512), "gptc-s": (12, 6, 384),
               "gptc-xs": (6, 6, 384), "gptc-xxs": (6, 4, 256)}  # name -> (layers, heads, width)
_FIXED = {
    "encoder_latent_query_embed": "encoder.queries", "encoder_patch_pe": "encoder.patch_pos",
    "x_embedder.proj.": "encoder.embed.proj.", "bottleneck.in_linear.": "encoder.proj.",
    "bottleneck.regularizer.embedding.weight": "quantizer.embedding",
    "bottleneck.out_linear.": "decoder.latent_proj.", "decoder_latent_pe": "decoder.latent_pos",
    "decoder_patch_query_embed": "decoder.patch_pos", "decoder_patch_query_token_type_embed": "decoder.mask_token",
    "final_layer.norm_final.": "decoder.norm_post.", "final_layer.linear.": "decoder.head.proj.",
    "prior_model.input_proj.": "prior.input_proj.", "prior_model.pos_emb": "prior.pos",
    "prior_model.ln_f.": "prior.norm.", "prior_model.head.": "prior.head.",
}


def _rename(key: str) -> str:
    for old, new in _FIXED.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):]
    m = re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.*)$", key)
    if m:
        return f"{m.group(1)}.transformer.blocks.{m.group(2)}.{m.group(3)}"
    m = re.match(r"prior_model\.blocks\.(\d+)\.(?:attn\.)?(.*)$", key)
    if m:
        return f"prior.blocks.{m.group(1)}.{m.group(2)}"
    raise ImportRefused(f"unexpected weight {key!r}: not a layout of the {FAMILY} tokenizer vistok imports")


def map_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official `LARPTokenizer` state dict -> the vistok Tokenizer's."""
    out = {_rename(k): v for k, v in state.items()}
    if "encoder.queries" in out and out["encoder.queries"].ndim == 2:
        out["encoder.queries"] = out["encoder.queries"][None]  # (N, D) -> (1, N, D)
    return out


def _read(checkpoint: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(the LARPTokenizer arguments, its state dict) of a mixin directory / safetensors file or a training
    checkpoint."""
    path = Path(checkpoint)
    if path.is_dir() or path.suffix == ".safetensors":
        weights = path / "model.safetensors" if path.is_dir() else path
        config = weights.with_name("config.json")
        if not weights.is_file() or not config.is_file():
            raise ImportRefused(f"{path}: a released LARP tokenizer is a directory with model.safetensors and "
                                "config.json; one of them is missing")
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights), device="cpu")
        except Exception as e:  # safetensors raises its own error type for a damaged file
            raise ImportRefused(f"{weights}: not a readable safetensors file (truncated or damaged?): {e}") from None
        try:
            args = json.loads(config.read_text())
        except ValueError as e:
            raise ImportRefused(f"{config}: not valid JSON ({e})") from None
        return args, state
    try:
        ckpt = read_checkpoint(path)
    except ImportRefused as e:
        if "no 'state_dict'" not in str(e):
            raise
        import argparse

        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not (isinstance(model, dict) and isinstance(model.get("sd"), dict) and isinstance(model.get("args"), dict)):
            raise ImportRefused(f"{path}: neither a LARP training checkpoint ({{'model': {{'args', 'sd'}}}}) nor a "
                                "released tokenizer directory") from None
        return model["args"], model["sd"]
    raise ImportRefused(f"{path}: a Lightning checkpoint, not a {FAMILY} one (LARP saves {{'model': {{'args', "
                        "'sd'}}}} or a model.safetensors + config.json directory)")


def config_from_args(args: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """The vistok tokenizer config of the official `LARPTokenizer` arguments; refuses what vistok does not build."""
    def refuse(why: str) -> None:
        raise ImportRefused(f"{where}: {why}")

    for flag, want in (("learned_encoder_patch_pe", False), ("learned_encoder_latent_query_embed", True),
                       ("learned_decoder_latent_pe", False), ("learned_decoder_patch_query_embed", False),
                       ("use_encoder_patch_token_type_embed", False),
                       ("use_encoder_latent_query_token_type_embed", False),
                       ("use_decoder_latent_token_type_embed", False),
                       ("use_decoder_patch_query_token_type_embed", True)):
        if bool(args.get(flag, want)) != want:
            refuse(f"{flag}={args.get(flag)!r} is not imported (the released tokenizers use {want})")
    for name in ("encoder_name", "decoder_name"):
        value = str(args.get(name) or "none").lower()
        if value not in ("none", "no", "null", "", "transformer_encoder_parallel"):
            refuse(f"{name} {args.get(name)!r} is not imported")
    if str(args.get("transformer_name", "transformer_encoder_parallel")) != "transformer_encoder_parallel":
        refuse(f"transformer_name {args.get('transformer_name')!r} is not imported")
    t, p = int(args.get("temporal_patch_size", 4)), int(args.get("patch_size", 8))
    if t < 2 or (int(args.get("decoder_temporal_patch_size", t)), int(args.get("decoder_patch_size", p))) != (t, p):
        refuse("only t x p x p patches (t >= 2) shared by encoder and decoder are imported")
    bottleneck = args.get("bottleneck") or {}
    reg = (bottleneck.get("args") or {}).get("regularizer") or {}
    reg_args = reg.get("args") or {}
    if str(reg.get("name", "")).lower() != "vq":
        refuse(f"bottleneck regularizer {reg.get('name')!r}: only LARP's VQ is imported (vistok is discrete)")
    if str((bottleneck.get("args") or {}).get("norm", "none")).lower() not in ("none", "no"):
        refuse("a normalised bottleneck (bottleneck.args.norm) is not imported")
    if float(reg_args.get("entropy_loss_weight", 0.0)) != 0.0:
        refuse("an entropy-regularised VQ is not imported")
    if float(reg_args.get("stochastic_temperature", 1.0)) <= 0:
        refuse("a learned stochastic temperature is not imported")
    dim = int(bottleneck["args"]["bottleneck_dim"])
    tokens, size, frames = int(args["bottleneck_token_num"]), int(args["input_size"]), int(args["frame_num"])

    def side(prefix: str) -> dict[str, Any]:
        width, heads = int(args[f"{prefix}_hidden_size"]), int(args[f"{prefix}_num_heads"])
        return dict(image_size=size, num_frames=frames, patch_size=p, temporal_patch=t, width=width,
                    depth=int(args[f"{prefix}_depth"]), num_heads=heads, num_tokens=tokens, token_dim=dim,
                    architecture="official")

    node = {"class_path": "vistok.tokenizers.tokenizer.Tokenizer", "init_args": {
        "encoder": {"class_path": "vistok.tokenizers.larp.LARPEncoder",
                    "init_args": dict(side("encoder"), in_channels=int(args.get("in_channels", 3)))},
        "quantizer": {"class_path": "vistok.quantizers.stochastic_vq.StochasticVQQuantizer", "init_args": dict(
            dim=dim, codebook_size=int(reg_args["codebook_size"]),
            l2_normalized=bool(reg_args.get("l2_normalized", False)), stochastic=bool(reg_args.get("stochastic")),
            temperature=float(reg_args.get("stochastic_temperature", 1.0)),
            commitment_weight=float(reg_args.get("commitment_loss_weight", 0.25)),
            codebook_weight=float(reg_args.get("codebook_loss_weight", 1.0)), deterministic_eval=True)},
        "decoder": {"class_path": "vistok.decoders.larp.LARPDecoder",
                    "init_args": dict(side("decoder"), out_channels=int(args.get("in_channels", 3)))}}}
    prior = args.get("prior_model") or {}
    if str(prior.get("name", "none")).lower() not in ("none", "no", "null", "") and "prior_model.head.weight" in state:
        width = int(state["prior_model.input_proj.weight"].shape[0])
        layers = len({k.split(".")[2] for k in state if k.startswith("prior_model.blocks.")})
        known = _GPTC_SIZES.get(str(prior["name"]).lower())
        heads = known[1] if known else max(1, width // 64)  # every GPTC size has 64-wide heads
        node["init_args"]["prior"] = {"class_path": "vistok.nn.prior.LARPPrior", "init_args": dict(
            token_dim=dim, max_tokens=int(state["prior_model.pos_emb"].shape[1]), width=width, depth=layers,
            num_heads=heads, dropout=0.0 if prior.get("no_dropout") else 0.1,
            temperature=float(prior.get("latent_ce_temperature", 1.0)), rounds=int(prior.get("n_rounds", 1)),
            max_sampling_ratio=float(prior.get("mix_ss_max_ratio", 0.5)) if prior.get("use_mix_ss") else 1.0,
            peak_progress=float(prior.get("mix_ss_peak_steps_ratio", 0.3)))}
    return node


def build_tokenizer(checkpoint: str | Path, config: str | Path | None = None) -> Any:
    """The vistok Tokenizer holding the checkpoint's weights (eval mode); refuses with one message."""

    args, state = _read(checkpoint)
    if "x_embedder.proj.weight" not in state or "bottleneck.regularizer.embedding.weight" not in state:
        raise ImportRefused(f"{checkpoint}: not a {FAMILY} tokenizer: it has no 'x_embedder.proj.weight' and "
                            "'bottleneck.regularizer.embedding.weight'")
    try:
        derived = config_from_args(args, state, str(checkpoint))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ImportRefused):
            raise
        raise ImportRefused(f"{checkpoint}: its config lacks or mistypes {e}") from None
    node = derived if config is None else config_from_file(config)
    try:
        tokenizer = from_config(node, where=str(config or checkpoint))
    except (TypeError, ValueError) as e:
        raise ImportRefused(f"{config or checkpoint}: cannot build the model: {e}") from None
    if config is not None and getattr(tokenizer.encoder, "architecture", None) != "official":
        raise ImportRefused(f"{config}: the encoder must be LARPEncoder with architecture 'official'")
    mapped = map_state_dict(state)
    if tokenizer.prior is None:
        mapped = {k: v for k, v in mapped.items() if not k.startswith("prior.")}
    return load_mapped(tokenizer, mapped, f"{checkpoint} (against {config or 'its own config'})")


def import_checkpoint(checkpoint: str, output: str, config: str | None = None, overwrite: bool = False) -> Path:
    """Write a vistok export of a released LARP tokenizer to `output`; nothing is written when the checkpoint is
    refused (ImportRefused, a ValueError, says why)."""
    return write_export(build_tokenizer, FAMILY, checkpoint, output, config, overwrite)
