"""Import a released OmniTokenizer VQ checkpoint (FoundationVision/OmniTokenizer, a Lightning .ckpt of its
`VQGAN` module) as a vistok video export.

The checkpoint's own arguments (`hyper_parameters.args`) give the model: `OmniEncoder` / `OmniDecoder` with
`architecture="official"` and `peg_order="official"` (the temporal PEG order those weights were trained with),
the spatial positions it used (`spatial_pos` rope or rel; the SDPA path, where the relative bias is not added),
and the EMA codebook (`EMACodebookQuantizer`, l2-normalised input). Its `pre_vq_conv` / `post_vq_conv` become the
encoder's and decoder's `proj`. The discriminators and the LPIPS network are left out. The VAE checkpoints
(stage 3, `--use_vae`) are refused: a vistok tokenizer is discrete.

With `config`, the model is built from that vistok config instead, and every weight must fit it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from vistok.configurable import from_config
from vistok.importers.lightning_ckpt import (
    ImportRefused,
    config_from_file,
    hyperparameters,
    load_mapped,
    read_checkpoint,
    write_export,
)

FAMILY = "OmniTokenizer"
IGNORED = ("image_discriminator.", "video_discriminator.", "perceptual_model.", "codebook.codebook_usage")
_BLOCK = [  # inside a transformer layer `layers.{i}.`: (official suffix, vistok suffix)
    (r"0\.dsconv\.", "peg.conv."),
    (r"1\.norm\.gamma$", "attn.norm.weight"), (r"1\.norm\.beta$", "attn.norm.bias"),
    (r"1\.context_norm\.gamma$", "attn.context_norm.weight"), (r"1\.context_norm\.beta$", "attn.context_norm.bias"),
    (r"1\.to_q\.", "attn.q."), (r"1\.to_kv\.", "attn.kv."), (r"1\.to_out\.", "attn.out."),
    (r"1\.q_scale$", "attn.q_scale"), (r"1\.k_scale$", "attn.k_scale"),
    (r"1\.spatial_rel_pos_bias\.net\.0\.0\.", "attn.rel_bias.net.0."),
    (r"1\.spatial_rel_pos_bias\.net\.1\.0\.", "attn.rel_bias.net.2."),
    (r"1\.spatial_rel_pos_bias\.net\.2\.", "attn.rel_bias.net.4."),
    (r"1\.relative_position_bias_table$", "attn.bias_table"),
    (r"1\.qkv\.", "attn.qkv."), (r"1\.proj\.", "attn.proj."),
    (r"3\.0\.", "ff.norm."), (r"3\.1\.", "ff.up."), (r"3\.4\.", "ff.down."),
]
_STACKS = {"encoder.enc_spatial_transformer.": "encoder.transformer.spatial.",
           "encoder.enc_temporal_transformer.": "encoder.transformer.temporal.",
           "decoder.dec_temporal_transformer.": "decoder.transformer.temporal.",
           "decoder.dec_spatial_transformer.": "decoder.transformer.spatial."}
_FIXED = {
    "encoder.to_patch_emb_first_frame.1.": "encoder.embed.first.norm_in.",
    "encoder.to_patch_emb_first_frame.2.": "encoder.embed.first.proj.",
    "encoder.to_patch_emb_first_frame.3.": "encoder.embed.first.norm_out.",
    "encoder.to_patch_emb.1.": "encoder.embed.rest.norm_in.",
    "encoder.to_patch_emb.2.": "encoder.embed.rest.proj.",
    "encoder.to_patch_emb.3.": "encoder.embed.rest.norm_out.",
    "decoder.to_pixels_first_frame.0.": "decoder.head.first.",
    "decoder.to_pixels.0.": "decoder.head.rest.",
    "pre_vq_conv.1.": "encoder.proj.",
    "post_vq_conv.1.": "decoder.proj.",
}
_CODEBOOK = {"codebook.embeddings": "quantizer.embeddings", "codebook.N": "quantizer.counts",
             "codebook.z_avg": "quantizer.sums"}


def _rename(key: str) -> str | None:
    """The vistok name of an official weight; None for one vistok does not keep (the window attention's index
    table, which vistok computes)."""
    if key in _CODEBOOK:
        return _CODEBOOK[key]
    for old, new in _FIXED.items():
        if key.startswith(old):
            return new + key[len(old):]
    for old, new in _STACKS.items():
        if key.startswith(old):
            rest = key[len(old):]
            if rest in ("norm_out.gamma", "norm_out.beta"):
                return new + ("norm_out.weight" if rest.endswith("gamma") else "norm_out.bias")
            m = re.match(r"layers\.(\d+)\.(.*)$", rest)
            if m is None:
                break
            if m.group(2) == "1.relative_position_index":
                return None
            for pattern, repl in _BLOCK:
                found = re.match(pattern, m.group(2))
                if found:
                    return f"{new}blocks.{m.group(1)}.{repl}{m.group(2)[found.end():]}"
            break
    raise ImportRefused(f"unexpected weight {key!r}: not a layout of the {FAMILY} VQ model vistok imports")


def map_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official `VQGAN` state dict -> the vistok Tokenizer's (discriminators and LPIPS left out)."""
    out = {}
    for key, value in state.items():
        if key.startswith(IGNORED):
            continue
        new = _rename(key)
        if new is not None:
            out[new] = value
    out["quantizer.initialized"] = torch.tensor(True)
    return out


def _get(args: dict[str, Any], key: str, default: Any = None) -> Any:
    return args.get(key, default)


def config_from_args(args: dict[str, Any], where: str) -> dict[str, Any]:
    """The vistok tokenizer config of the official arguments; refuses what vistok does not build."""
    def refuse(why: str) -> None:
        raise ImportRefused(f"{where}: {why}")

    if _get(args, "tokenizer", "omnitokenizer") != "omnitokenizer":
        refuse(f"tokenizer {args.get('tokenizer')!r} is not OmniTokenizer's transformer")
    if _get(args, "use_vae", False):
        refuse("a VAE checkpoint (--use_vae, the KL stage): vistok imports the discrete (VQ) OmniTokenizer only")
    if _get(args, "use_external_codebook", False):
        refuse("--use_external_codebook checkpoints are not imported (the released ones use the EMA codebook)")
    if _get(args, "patch_embed", "linear") != "linear":
        refuse(f"patch_embed {args.get('patch_embed')!r}: only the released 'linear' patch embedding is imported")
    for flag in ("defer_temporal_pool", "defer_spatial_pool", "gen_upscale"):
        if _get(args, flag):
            refuse(f"--{flag} is not imported (no released checkpoint uses it)")
    if not (_get(args, "causal_in_temporal_transformer") and _get(args, "causal_in_peg", True)):
        refuse("only causal temporal attention and causal PEGs are imported (the released recipes)")
    letters = {"t": "full", "w": "window"}
    blocks = {}
    for side in ("enc_block", "dec_block"):
        text = _get(args, side, "t" * int(_get(args, "spatial_depth", 4)))
        if set(text) - set(letters):
            refuse(f"{side} {text!r}: only 't' (attention) and 'w' (window) blocks are imported")
        blocks[side] = [letters[c] for c in text]
    dim, heads = int(args["embedding_dim"]), int(args["heads"])
    common = dict(image_size=int(args["resolution"]), patch_size=int(args["patch_size"]),
                  temporal_patch=int(args["temporal_patch_size"]), width=dim, num_heads=heads,
                  window_size=int(_get(args, "twod_window_size", 4)), temporal_depth=int(args["temporal_depth"]),
                  token_dim=int(args["codebook_dim"]), mlp_ratio=float(_get(args, "ff_mult", 4.0)),
                  architecture="official", head_dim=int(_get(args, "dim_head", 64)),
                  spatial_pos=str(_get(args, "spatial_pos", "rel")), peg_order="official")
    enc = dict(common, in_channels=int(_get(args, "image_channels", 3)), spatial_blocks=blocks["enc_block"],
               num_frames=int(_get(args, "sequence_length", 17)))
    dec = dict(common, out_channels=int(_get(args, "image_channels", 3)), spatial_blocks=blocks["dec_block"])
    quantizer = dict(dim=int(args["codebook_dim"]), codebook_size=int(args["n_codes"]),
                     l2_input=bool(_get(args, "l2_code", False)))
    return {"class_path": "vistok.tokenizers.tokenizer.Tokenizer", "init_args": {
        "encoder": {"class_path": "vistok.tokenizers.omni.OmniEncoder", "init_args": enc},
        "quantizer": {"class_path": "vistok.quantizers.ema_codebook.EMACodebookQuantizer", "init_args": quantizer},
        "decoder": {"class_path": "vistok.decoders.omni.OmniDecoder", "init_args": dec}}}


def build_tokenizer(checkpoint: str | Path, config: str | Path | None = None) -> Any:
    """The vistok Tokenizer holding the checkpoint's weights (eval mode); refuses with one message."""

    ckpt = read_checkpoint(checkpoint)
    state = ckpt["state_dict"]
    if "encoder.to_patch_emb_first_frame.2.weight" not in state or "codebook.embeddings" not in state:
        hint = " (an OmniTokenizer VAE?)" if "encoder.to_patch_emb_first_frame.2.weight" in state else ""
        raise ImportRefused(f"{checkpoint}: not an {FAMILY} VQ checkpoint{hint}: it has no "
                            "'encoder.to_patch_emb_first_frame.2.weight' and 'codebook.embeddings'")
    args = hyperparameters(ckpt, checkpoint)
    derived = config_from_args(args, str(checkpoint))
    node = derived if config is None else config_from_file(config)
    try:
        tokenizer = from_config(node, where=str(config or checkpoint))
    except (TypeError, ValueError) as e:
        raise ImportRefused(f"{config or checkpoint}: cannot build the model: {e}") from None
    if config is not None:
        enc = getattr(tokenizer, "encoder", None)
        if getattr(enc, "architecture", None) != "official" or getattr(enc, "peg_order", "official") != "official":
            raise ImportRefused(f"{config}: the encoder must be OmniEncoder with architecture 'official' and "
                                "peg_order 'official' to compute what these weights were trained for")
    mapped = map_state_dict(state)
    return load_mapped(tokenizer, mapped, f"{checkpoint} (against {config or 'its own arguments'})")


def import_checkpoint(checkpoint: str, output: str, config: str | None = None, overwrite: bool = False) -> Path:
    """Write a vistok export of a released OmniTokenizer checkpoint to `output`; nothing is written when the
    checkpoint is refused (ImportRefused, a ValueError, says why)."""
    return write_export(build_tokenizer, FAMILY, checkpoint, output, config, overwrite)
