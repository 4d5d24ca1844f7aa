"""Import a released FlexTok checkpoint (apple/ml-flextok, `model.safetensors`) as a vistok export.

The released file carries the model's hydra config in its safetensors metadata (one entry per top-level key,
each a Python literal); the VAE is a separate diffusers AutoencoderKL that the user gives by path. The config
says which modules the encoder and decoder chain and with which sizes; we read the fields that decide the
computation, refuse the options our `FlexTokVAEEncoder` / `FlexTokFlowDecoder` do not implement (naming the
module and field), map the weights onto ours by name, and write a normal export directory
(`vistok.saving.save_pretrained`) whose decoder samples with FlexTok's Euler sampler and APG guidance.

Refusals (one message naming what and where, nothing written): a file that is not a FlexTok checkpoint, a VAE
whose latent channels, scaling factor or (when the checkpoint carries them) weights disagree with the
checkpoint, a missing or mis-shaped weight, an existing output directory without `overwrite`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

FLEXTOK_TARGETS = ("flextok.flextok_wrapper.FlexTok", "flextok.flextok_wrapper.FlexTokFromHub")


class ImportRefused(ValueError):
    """A checkpoint or VAE that cannot be imported; the message names what and where."""


def read_config(checkpoint: Path) -> dict[str, Any]:
    """The hydra config in a released checkpoint's safetensors metadata."""
    try:
        with safe_open(str(checkpoint), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # not a safetensors file at all
        raise ImportRefused(f"{checkpoint}: not a safetensors checkpoint ({e})") from None
    if not meta:
        raise ImportRefused(f"{checkpoint}: no config in its safetensors metadata; a released FlexTok checkpoint "
                            "carries its hydra config there")
    config: dict[str, Any] = {}
    for key, text in meta.items():
        try:
            config[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            config[key] = text
    target = config.get("_target_")
    if target not in FLEXTOK_TARGETS:
        raise ImportRefused(f"{checkpoint}: not a FlexTok checkpoint: its config's _target_ is {target!r} "
                            f"(expected one of {list(FLEXTOK_TARGETS)})")
    for part in ("vae", "encoder", "decoder", "regularizer"):
        if not isinstance(config.get(part), dict):
            raise ImportRefused(f"{checkpoint}: its FlexTok config has no {part!r} section")
    return config


def _modules(config: dict[str, Any], part: str, where: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """{class name: (module name, its config)} of the encoder's or decoder's module_dict (the last one wins)."""
    mods = config[part].get("module_dict")
    if not isinstance(mods, dict):
        raise ImportRefused(f"{where}: config {part} has no module_dict")
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, cfg in mods.items():
        cls = str(cfg.get("_target_", "")).rsplit(".", 1)[-1]
        if cls == "PositionalEmbeddingAdder":
            cls += "_1d" if len(cfg.get("max_sizes", [])) == 1 else "_2d"
        found[cls] = (name, cfg)
    return found


def _need(mods: dict, cls: str, part: str, where: Path) -> tuple[str, dict[str, Any]]:
    if cls not in mods:
        raise ImportRefused(f"{where}: config {part}.module_dict has no {cls} module; this FlexTok layout is not "
                            "supported")
    return mods[cls]


def _check(value: Any, expected: Any, field: str, where: Path) -> None:
    if value != expected:
        raise ImportRefused(f"{where}: config {field} = {value!r} is not supported (vistok implements "
                            f"{expected!r})")


def _transformer_args(cfg: dict[str, Any], field: str, where: Path) -> dict[str, Any]:
    for key, supported in (("qkv_bias", False), ("proj_bias", False), ("mlp_bias", False), ("gated_mlp", True),
                           ("qk_norm", True)):
        if key in cfg:
            _check(cfg[key], supported, f"{field}.{key}", where)
    return {"width": int(cfg.get("dim", 768)), "depth": int(cfg.get("depth", 12)),
            "head_dim": int(cfg.get("head_dim", 64)), "mlp_ratio": float(cfg.get("mlp_ratio", 4.0))}


def build_args(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """The constructor arguments of our encoder, quantizer and decoder, and the weight names to map."""
    enc, dec = _modules(config, "encoder", where), _modules(config, "decoder", where)
    e_patch_name, e_patch = _need(enc, "PatchEmbedder", "encoder", where)
    e_pos_name, e_pos = _need(enc, "PositionalEmbeddingAdder_2d", "encoder", where)
    e_reg_name, e_reg = _need(enc, "Registers1D", "encoder", where)
    e_pack_name, e_pack = _need(enc, "BlockWiseSequencePacker", "encoder", where)
    e_tr_name, e_tr = _need(enc, "FlexTransformer", "encoder", where)
    e_head_name, e_head = _need(enc, "LinearHead", "encoder", where)
    _check(e_pack.get("mask_mode", "full"), "causal_last", f"encoder.{e_pack_name}.mask_mode", where)
    _check(e_pos.get("posemb_type", "sincos"), "sincos", f"encoder.{e_pos_name}.posemb_type", where)
    _check(e_reg.get("ordering_mode", "nested"), "nested", f"encoder.{e_reg_name}.ordering_mode", where)
    if e_head.get("adaLN_emb_read_key") is not None:
        raise ImportRefused(f"{where}: config encoder.{e_head_name} has adaLN; not supported")
    d_lin_name, d_lin = _need(dec, "LinearLayer", "decoder", where)
    d_rpos_name, d_rpos = _need(dec, "PositionalEmbeddingAdder_1d", "decoder", where)
    d_drop_name, _ = _need(dec, "MaskedNestedDropout", "decoder", where)
    d_null_name, d_null = _need(dec, "LearnedNullCond", "decoder", where)
    d_patch_name, d_patch = _need(dec, "PatchEmbedder", "decoder", where)
    d_pos_name, d_pos = _need(dec, "PositionalEmbeddingAdder_2d", "decoder", where)
    d_pack_name, d_pack = _need(dec, "BlockWiseSequencePacker", "decoder", where)
    d_time_name, d_time = _need(dec, "TimestepEmbedder", "decoder", where)
    d_tr_name, d_tr = _need(dec, "FlexTransformer", "decoder", where)
    d_head_name, d_head = _need(dec, "ToPatchesLinearHead", "decoder", where)
    _check(d_rpos.get("posemb_type"), "learnable_sum", f"decoder.{d_rpos_name}.posemb_type", where)
    _check(d_pos.get("posemb_type", "sincos"), "sincos", f"decoder.{d_pos_name}.posemb_type", where)
    _check(d_pack.get("mask_mode", "full"), "full", f"decoder.{d_pack_name}.mask_mode", where)
    _check(bool(d_pack.get("per_subseq_embs", False)), True, f"decoder.{d_pack_name}.per_subseq_embs", where)
    _check(int(d_tr.get("adaLN_expansion", 1)), 2, f"decoder.{d_tr_name}.adaLN_expansion", where)
    _check(bool(d_null.get("replace_with_single_token", False)), False,
           f"decoder.{d_null_name}.replace_with_single_token", where)
    _check(int(d_time.get("frequency_embedding_size", 256)), 256,
           f"decoder.{d_time_name}.frequency_embedding_size", where)
    if d_head.get("adaLN_emb_read_key") is None:
        raise ImportRefused(f"{where}: config decoder.{d_head_name} has no adaLN; not supported")
    levels = list(config["regularizer"].get("levels", []))
    if not levels:
        raise ImportRefused(f"{where}: config regularizer has no FSQ levels")
    patch = list(e_patch.get("patch_sizes", [2, 2]))
    if len(patch) != 2 or patch[0] != patch[1] or list(d_patch.get("patch_sizes", patch)) != patch:
        raise ImportRefused(f"{where}: config patch_sizes {patch} / {d_patch.get('patch_sizes')} are not one square "
                            "patch for both encoder and decoder")
    grid = tuple(int(s) for s in e_pos["max_sizes"])
    tokens = int(e_reg["n_max"])
    common = dict(patch_size=patch[0], num_tokens=tokens, token_dim=len(levels))
    encoder = dict(common, **_transformer_args(e_tr, f"encoder.{e_tr_name}", where), pos_grid=grid)
    decoder = dict(common, **_transformer_args(d_tr, f"decoder.{d_tr_name}", where),
                   pos_grid=tuple(int(s) for s in d_pos["max_sizes"]),
                   max_timestep=float(d_time.get("max_timestep", 1000.0)))
    e, d = "encoder.module_dict.", "decoder.module_dict."
    renames = {  # our prefix -> the checkpoint's
        "encoder.patch_proj.": f"{e}{e_patch_name}.patch_proj.",
        "encoder.registers": f"{e}{e_reg_name}.registers",
        "encoder.transformer.": f"{e}{e_tr_name}.",
        "encoder.to_latents.": f"{e}{e_head_name}.proj.",
        "decoder.patch_proj.": f"{d}{d_patch_name}.patch_proj.",
        "decoder.from_latents.": f"{d}{d_lin_name}.proj.",
        "decoder.register_pos": f"{d}{d_rpos_name}.posembs",
        "decoder.mask_token": f"{d}{d_drop_name}.dropout_mask_token",
        "decoder.null_token": f"{d}{d_null_name}.nullcond",
        "decoder.time_embed.": f"{d}{d_time_name}.",
        "decoder.transformer.": f"{d}{d_tr_name}.",
        "decoder.out_modulation.": f"{d}{d_head_name}.adaLN_modulation.",
        "decoder.out_proj.": f"{d}{d_head_name}.proj.",
    }
    frozen = {"encoder": f"{e}{e_pos_name}.posembs", "decoder": f"{d}{d_pos_name}.posembs"}
    return {"encoder": encoder, "decoder": decoder, "levels": levels, "channels": int(e_patch["channels_in"]),
            "renames": renames, "frozen": frozen}


def _vae_facts(vae: Path, config: dict[str, Any], channels: int, checkpoint: Path,
               weights: dict[str, torch.Tensor]) -> tuple[float | None, int]:
    """Check the VAE directory against the checkpoint; returns (latent_scale to pass, its downsampling)."""
    cfg_path = vae / "config.json"
    if not cfg_path.is_file():
        raise ImportRefused(f"{vae}: no diffusers AutoencoderKL here (no config.json); pass the directory of the "
                            f"VAE the checkpoint names ({config['vae'].get('hf_hub_path')!r})")
    vcfg = json.loads(cfg_path.read_text())
    want = int(config["vae"].get("latent_channels", 16))
    have = int(vcfg.get("latent_channels", -1))
    if have != want or have != channels:
        raise ImportRefused(f"{vae}: the VAE has {have} latent channels; the checkpoint {checkpoint} expects "
                            f"{want} (vae.latent_channels) and its encoder reads {channels}")
    scale = config["vae"].get("scaling_factor")
    if scale is not None and vcfg.get("scaling_factor") is not None and \
            abs(float(scale) - float(vcfg["scaling_factor"])) > 1e-9:
        raise ImportRefused(f"{vae}: the VAE's scaling_factor {vcfg['scaling_factor']} disagrees with the "
                            f"checkpoint's vae.scaling_factor {scale} ({checkpoint})")
    if scale is None and vcfg.get("scaling_factor") is None:
        raise ImportRefused(f"{vae}: the VAE config has no scaling_factor and the checkpoint {checkpoint} sets none")
    carried = {k[len("vae.vae."):]: v for k, v in weights.items() if k.startswith("vae.vae.")}
    if carried:
        from diffusers import AutoencoderKL

        mine = AutoencoderKL.from_pretrained(str(vae)).state_dict()
        for name, value in carried.items():
            if name not in mine or tuple(mine[name].shape) != tuple(value.shape) or \
                    not torch.equal(mine[name].float(), value.float()):
                raise ImportRefused(f"{vae}: the VAE's weight {name!r} differs from the one the checkpoint "
                                    f"{checkpoint} carries (vae.vae.{name}); pass the VAE it was trained with")
    return (None if scale is None else float(scale)), 2 ** (len(vcfg.get("block_out_channels", [0])) - 1)


def import_checkpoint(checkpoint: str, output: str, vae: str | None = None, overwrite: bool = False,
                      image_size: int | None = None) -> Path:
    """Write the vistok export of a released FlexTok `model.safetensors` (+ its VAE directory) to `output`.
    `image_size`: the side of the images the export takes (None: the largest the checkpoint's position tables
    cover, 256 px for the released models)."""
    from safetensors.torch import load_file

    from vistok.decoders.flextok_flow import FlexTokFlowDecoder
    from vistok.decoders.rectified_flow import FlexTokEulerSampler, RectifiedFlow
    from vistok.quantizers.fsq import FSQQuantizer
    from vistok.saving import save_pretrained
    from vistok.tokenizers.dropout import NestedDropout
    from vistok.tokenizers.flextok import FlexTokVAEEncoder
    from vistok.tokenizers.tokenizer import Tokenizer

    ckpt, out = Path(checkpoint), Path(output)
    if not ckpt.is_file():
        raise ImportRefused(f"{ckpt}: no such checkpoint file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another output or pass overwrite=True")
    config = read_config(ckpt)
    args = build_args(config, ckpt)
    if vae is None:
        raise ImportRefused(f"{ckpt}: FlexTok needs its VAE: pass vae=PATH, a local diffusers AutoencoderKL "
                            f"directory (the checkpoint names {config['vae'].get('hf_hub_path')!r})")
    weights = load_file(str(ckpt))
    vae_dir = Path(vae).resolve()
    scale, factor = _vae_facts(vae_dir, config, args["channels"], ckpt, weights)
    for part in ("encoder", "decoder"):  # latent patches -> pixels (vistok's patch_size counts pixels)
        args[part]["patch_size"] *= factor
    side = [g * args["encoder"]["patch_size"] for g in args["encoder"]["pos_grid"]]
    if image_size is None:
        image_size = side[0] if side[0] == side[1] else tuple(side)
    elif image_size > min(side):
        raise ImportRefused(f"{ckpt}: image_size {image_size} is larger than its position tables cover ({side})")
    sample = bool(config["vae"].get("sample_posterior", True))
    encoder = FlexTokVAEEncoder(image_size=image_size, vae_path=str(vae_dir), latent_scale=scale,
                                sample_posterior=sample, **args["encoder"])
    decoder = FlexTokFlowDecoder(image_size=image_size, vae_path=str(vae_dir), latent_scale=scale,
                                 sample_posterior=sample, **args["decoder"], objective=RectifiedFlow(),
                                 sampler=FlexTokEulerSampler(guidance="apg"))
    tok = Tokenizer(encoder, FSQQuantizer(args["levels"]), decoder,
                    NestedDropout(args["encoder"]["num_tokens"], "uniform_pow2"))
    state = {}
    for ours, shape in ((k, v.shape) for k, v in tok.state_dict().items()):
        prefix = next((p for p in args["renames"] if ours.startswith(p)), None)
        if prefix is None:
            raise ImportRefused(f"{ckpt}: vistok weight {ours!r} has no counterpart in the FlexTok layout")
        theirs = args["renames"][prefix] + ours[len(prefix):]
        if theirs not in weights:
            raise ImportRefused(f"{ckpt}: missing weight {theirs!r} (for {ours})")
        value = weights[theirs]
        if ours == "decoder.register_pos":  # (1, 1, D, N_max) learnable 1D table -> its first N: (1, N, D)
            value = value[0][:, :, : shape[1]].transpose(1, 2)
        if tuple(value.shape) != tuple(shape):
            raise ImportRefused(f"{ckpt}: weight {theirs!r} has shape {tuple(value.shape)}, vistok expects "
                                f"{tuple(shape)} for {ours}")
        state[ours] = value.float()
    for part, key in args["frozen"].items():  # the frozen sin-cos tables must be the ones we compute
        if key not in weights:
            raise ImportRefused(f"{ckpt}: missing weight {key!r} (the {part}'s sin-cos positions)")
        gh, gw = getattr(tok, part).grid  # the stored table covers the largest grid: crop it to ours
        table = weights[key][0][:, :gh, :gw].permute(1, 2, 0).reshape(1, gh * gw, -1).float()
        ours = getattr(tok, part).pos
        if table.shape != ours.shape or not torch.allclose(table, ours, atol=1e-5):
            raise ImportRefused(f"{ckpt}: {key} is not the 2D sin-cos table vistok computes for this grid")
    used = {args["renames"][p] for p in args["renames"]}
    unused = [k for k in weights if not k.startswith("vae.") and k not in args["frozen"].values()
              and not any(k.startswith(u) for u in used)]
    if unused:
        raise ImportRefused(f"{ckpt}: weights vistok does not know how to use: {unused[:5]}")
    tok.load_state_dict(state)
    return save_pretrained(tok.eval(), out, source=f"FlexTok {ckpt.name} (apple/ml-flextok) + VAE {vae_dir.name}",
                           overwrite=overwrite)
