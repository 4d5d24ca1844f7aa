"""Import a released TiTok, TA-TiTok or One-D-Piece checkpoint (bytedance/1d-tokenizer, turingmotors/One-D-Piece)
into a vistok export directory.

What the official repositories release: a plain state dict (`.bin` / `.pt`, read here with
`torch.load(weights_only=True)`, or `.safetensors`), alone or in a directory with the Hugging Face `config.json`
their `save_pretrained` writes; the model's numbers are in a YAML of their `configs/` (`model.vq_model.*`,
`dataset.preprocessing.crop_size`), which `config` names. Without any config the architecture is read from the
weights' shapes, and the two facts weights cannot show take the released values: the token projection is legacy
exactly when the decoder has the proxy-code head (the official flag `is_legacy` switches both), and the codebook
is l2-normalised exactly when it is 4096 x 12 (every released 12-dim model; the 64-dim VQ-8k ones are not).

Every key is placed (`KEY_MAP`), its tensor reshaped only where the layouts differ by unit dimensions (1x1 convs
as linear maps, tables with a leading batch dimension); a key that cannot be placed, a key the model needs and does
not get, or a tensor of the wrong size fails with one message naming the file and the keys, and nothing is
written. The export is the faithful model (class token, legacy projection, exact GELU, eps 1e-5, [0, 1] pixels
inside), loaded back by `Tokenizer.from_pretrained` like any other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("titok", "tatitok", "onedpiece")
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
CONFIG_NAMES = ("config.json", "config.yaml")

_BLOCK = [  # inside encoder.transformer.{i} / decoder.transformer.{i}
    (r"ln_1\.", "norm1."), (r"ln_2\.", "norm2."), (r"attn\.in_proj_weight", "attn.qkv.weight"),
    (r"attn\.in_proj_bias", "attn.qkv.bias"), (r"attn\.out_proj\.", "attn.proj."),
    (r"mlp\.c_fc\.", "mlp.fc1."), (r"mlp\.c_proj\.", "mlp.fc2."),
]
# (official pattern, vistok replacement), tried in order; the pattern must match the whole key.
KEY_MAP: list[tuple[str, str]] = [
    (r"latent_tokens", "encoder.latent_tokens"),
    (r"encoder\.patch_embed\.(weight|bias)", r"encoder.stem.proj.\1"),
    (r"encoder\.class_embedding", "encoder.class_token"),
    (r"encoder\.positional_embedding", "encoder.patch_pos"),
    (r"encoder\.latent_token_positional_embedding", "encoder.latent_pos"),
    (r"(encoder|decoder)\.ln_pre\.(weight|bias)", r"\1.norm_pre.\2"),
    (r"(encoder|decoder)\.ln_post\.(weight|bias)", r"\1.norm_post.\2"),
    *[(rf"(encoder|decoder)\.transformer\.(\d+)\.{a}(.*)", rf"\1.transformer.blocks.\2.{b}\3") for a, b in _BLOCK],
    (r"encoder\.conv_out\.(weight|bias)", r"encoder.proj.\1"),
    (r"quantize\.embedding\.weight", "quantizer.embedding.weight"),
    (r"quantize\.embed_prob", "quantizer.embed_prob"),
    (r"decoder\.decoder_embed\.(weight|bias)", r"decoder.token_fill.proj.\1"),
    (r"decoder\.class_embedding", "decoder.class_token"),
    (r"decoder\.positional_embedding", "decoder.patch_pos"),
    (r"decoder\.mask_token", "decoder.mask_token"),
    (r"decoder\.latent_token_positional_embedding", "decoder.token_fill.pos"),
    (r"decoder\.ffn\.([02])\.(weight|bias)", r"decoder.head.ffn.\1.\2"),  # legacy: the proxy-code head
    (r"decoder\.conv_out\.(weight|bias)", r"decoder.conv_out.\1"),  # non-legacy: the pixel head's 3x3 conv
    (r"pixel_quantize\.embedding\.weight", "decoder.head.codebook"),
    (r"pixel_decoder\.(.+)", r"decoder.head.pixel_decoder.\1"),
    (r"decoder\.text_guidance_proj\.(weight|bias)", r"decoder.text_proj.\1"),
    (r"decoder\.text_guidance_positional_embedding", "decoder.text_pos"),
]


_REVERSE_BLOCK = [(b.replace(".", r"\."), a.replace("\\", "")) for a, b in _BLOCK]
# vistok name -> official name (the inverse of KEY_MAP), for messages and for writing the official layout.
REVERSE_MAP: list[tuple[str, str]] = [
    (r"encoder\.latent_tokens", "latent_tokens"),
    (r"encoder\.stem\.proj\.(weight|bias)", r"encoder.patch_embed.\1"),
    (r"(encoder|decoder)\.class_token", r"\1.class_embedding"),
    (r"(encoder|decoder)\.patch_pos", r"\1.positional_embedding"),
    (r"encoder\.latent_pos", "encoder.latent_token_positional_embedding"),
    (r"(encoder|decoder)\.norm_pre\.(weight|bias)", r"\1.ln_pre.\2"),
    (r"(encoder|decoder)\.norm_post\.(weight|bias)", r"\1.ln_post.\2"),
    *[(rf"(encoder|decoder)\.transformer\.blocks\.(\d+)\.{b}(.*)", rf"\1.transformer.\2.{a}\3")
      for b, a in _REVERSE_BLOCK],
    (r"encoder\.proj\.(weight|bias)", r"encoder.conv_out.\1"),
    (r"quantizer\.(embedding\.weight|embed_prob)", r"quantize.\1"),
    (r"decoder\.token_fill\.proj\.(weight|bias)", r"decoder.decoder_embed.\1"),
    (r"decoder\.mask_token", "decoder.mask_token"),
    (r"decoder\.token_fill\.pos", "decoder.latent_token_positional_embedding"),
    (r"decoder\.head\.ffn\.([02])\.(weight|bias)", r"decoder.ffn.\1.\2"),
    (r"decoder\.head\.proj\.(weight|bias)", r"decoder.ffn.0.\1"),
    (r"decoder\.conv_out\.(weight|bias)", r"decoder.conv_out.\1"),
    (r"decoder\.head\.codebook", "pixel_quantize.embedding.weight"),
    (r"decoder\.head\.pixel_decoder\.(.+)", r"pixel_decoder.\1"),
    (r"decoder\.text_proj\.(weight|bias)", r"decoder.text_guidance_proj.\1"),
    (r"decoder\.text_pos", "decoder.text_guidance_positional_embedding"),
]


def official_key(key: str) -> str | None:
    """The official name of a vistok key of a faithful TiTok, or None (a part the official models lack)."""
    for pattern, repl in REVERSE_MAP:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be imported (a ValueError naming the file and the keys)."""


def vistok_key(key: str, legacy: bool) -> str | None:
    """The vistok name of an official key, or None when no rule places it."""
    if not legacy and re.fullmatch(r"decoder\.ffn\.0\.(weight|bias)", key):  # non-legacy: the linear patch head
        return key.replace("decoder.ffn.0.", "decoder.head.proj.")
    for pattern, repl in KEY_MAP:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


# --- reading files ---------------------------------------------------------------------------------------------
def find_files(checkpoint: Path, config: str | Path | None) -> tuple[Path, Path | None]:
    """(weights file, config file or None) from a file or a directory."""
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint} does not exist")
    if checkpoint.is_dir():
        named = [checkpoint / n for n in WEIGHT_NAMES if (checkpoint / n).is_file()]
        found = named or sorted(p for p in checkpoint.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if len(found) != 1:
            raise CheckpointError(f"{checkpoint}: expected one weights file ({', '.join(WEIGHT_SUFFIXES)}), found "
                               f"{[p.name for p in found] or 'none'}")
        weights = found[0]
        if config is None:
            config = next((checkpoint / n for n in CONFIG_NAMES if (checkpoint / n).is_file()), None)
    else:
        weights = checkpoint
    if config is not None and not Path(config).is_file():
        raise FileNotFoundError(f"config {config} does not exist")
    return weights, (Path(config) if config is not None else None)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors or a torch pickle (weights only); anything else is refused."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors' own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle of other objects than tensors, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a plain state dict readable with weights_only=True ({first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict (names to tensors)")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a plain state dict: entries that are not tensors: {bad[:8]}")
    return state


def read_config(path: Path) -> dict[str, Any]:
    """The official config (YAML of their configs/ or the hub's config.json) as a dict."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            import yaml

            data = yaml.safe_load(path.read_text())
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable config ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model", {}).get("vq_model"), dict):
        raise CheckpointError(f"{path}: no model.vq_model section (not a TiTok / One-D-Piece config)")
    return data


# --- architecture ---------------------------------------------------------------------------------------------
_WIDTHS = {512: "small", 768: "base", 1024: "large"}
_DEPTHS = {"small": 8, "base": 12, "large": 24}


def _need(state: dict[str, torch.Tensor], key: str, where: Path) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{where}: missing key {key!r}: not a TiTok / TA-TiTok / One-D-Piece tokenizer "
                                 "checkpoint")
    return state[key]


def _size(state: dict[str, torch.Tensor], part: str, where: Path) -> str:
    width = int(_need(state, f"{part}.ln_pre.weight", where).shape[0])
    if width not in _WIDTHS:
        raise CheckpointError(f"{where}: {part}.ln_pre.weight has width {width}; the official sizes are "
                           f"{sorted(_WIDTHS)}")
    return _WIDTHS[width]


def architecture(state: dict[str, torch.Tensor], where: Path, config: dict[str, Any] | None,
                 config_path: Path | None) -> dict[str, Any]:
    """`titok_official` arguments from the weights, checked against the config when there is one."""
    patch = _need(state, "encoder.patch_embed.weight", where)
    p = int(patch.shape[-1])
    rows = int(_need(state, "encoder.positional_embedding", where).shape[0]) - 1
    grid = int(round(rows**0.5))
    codebook = _need(state, "quantize.embedding.weight", where)
    legacy = "decoder.ffn.2.weight" in state
    arch = {
        "encoder_size": _size(state, "encoder", where), "decoder_size": _size(state, "decoder", where),
        "num_tokens": int(_need(state, "latent_tokens", where).shape[0]),
        "token_dim": int(codebook.shape[1]), "codebook_size": int(codebook.shape[0]),
        "l2_norm": tuple(codebook.shape) == (4096, 12), "legacy": legacy, "image_size": grid * p,
        "patch_size": p,
        "text_context_length": (int(state["decoder.text_guidance_positional_embedding"].shape[0])
                                if "decoder.text_guidance_positional_embedding" in state else 0),
    }
    for part in ("encoder", "decoder"):
        depth = len({k.split(".")[2] for k in state if k.startswith(f"{part}.transformer.")})
        want = _DEPTHS[arch[f"{part}_size"]]
        if depth != want:
            raise CheckpointError(f"{where}: {part}.transformer has {depth} blocks; a {arch[f'{part}_size']} "
                               f"model has {want}")
    if config is None:
        return arch
    vq = config["model"]["vq_model"]
    crop = config.get("dataset", {}).get("preprocessing", {}).get("crop_size")
    checks = [("vit_enc_model_size", arch["encoder_size"], "encoder.ln_pre.weight"),
              ("vit_dec_model_size", arch["decoder_size"], "decoder.ln_pre.weight"),
              ("vit_enc_patch_size", p, "encoder.patch_embed.weight"),
              ("num_latent_tokens", arch["num_tokens"], "latent_tokens"),
              ("token_size", arch["token_dim"], "quantize.embedding.weight"),
              ("codebook_size", arch["codebook_size"], "quantize.embedding.weight"),
              ("is_legacy", legacy, "decoder.ffn.2.weight (present only in legacy models)")]
    bad = [f"{name}: {vq[name]!r} in the config, {value!r} in the weights ({key})"
           for name, value, key in checks if name in vq and vq[name] != value]
    if crop is not None and crop != arch["image_size"]:
        bad.append(f"dataset.preprocessing.crop_size: {crop!r} in the config, {arch['image_size']} in the weights "
                   "(encoder.positional_embedding)")
    if "is_legacy" not in vq and not legacy:  # the official default is legacy
        bad.append("is_legacy: absent (the official default, true) in the config, but the weights have the "
                   "non-legacy pixel head (no decoder.ffn.2.weight)")
    if bad:
        raise CheckpointError(f"{config_path} disagrees with {where}: " + "; ".join(bad))
    if "use_l2_norm" in vq:
        arch["l2_norm"] = bool(vq["use_l2_norm"])
    if vq.get("clustering_vq"):
        arch["clustering"] = True
    return arch


def _check_family(family: str, arch: dict[str, Any], where: Path) -> None:
    text = arch["text_context_length"] > 0
    if family == "tatitok" and not text:
        raise CheckpointError(f"{where}: not a TA-TiTok checkpoint (no decoder.text_guidance_proj.weight); import "
                                 "it as titok")
    if family != "tatitok" and text:
        raise CheckpointError(f"{where}: a TA-TiTok checkpoint (decoder.text_guidance_proj.weight): import it as "
                              "tatitok")
    if family == "onedpiece" and not arch["legacy"]:
        raise CheckpointError(f"{where}: One-D-Piece checkpoints have the proxy-code head (decoder.ffn.2.weight); this "
                              "one has a pixel head")


DROPOUTS = ("nested", "tail")


def build(family: str, arch: dict[str, Any], dropout: str | None = None):
    """The faithful model; `dropout` makes it flexible-length for fine-tuning: "nested" (FlexTok's nested dropout,
    dropped tokens become a learned embedding, `token_fill="mask"`) or "tail" (One-D-Piece's tail drop)."""
    from vistok.tokenizers.dropout import NestedDropout, TailDrop
    from vistok.tokenizers.variants.titok import titok_official

    if dropout not in (None, *DROPOUTS):
        raise ValueError(f"dropout must be one of {DROPOUTS} or None, got {dropout!r}")
    n = arch["num_tokens"]
    if dropout == "nested":
        return titok_official(**arch, token_fill="mask", token_dropout=NestedDropout(n, "pow2"))
    drop = TailDrop(n) if family == "onedpiece" or dropout == "tail" else None
    return titok_official(**arch, token_dropout=drop)


def map_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, legacy: bool,
                   where: Path) -> dict[str, torch.Tensor]:
    """Official state dict -> the model's, or one error naming every key that cannot be placed or is missing."""
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unplaced, wrong = [], []
    for key, value in state.items():
        ours = vistok_key(key, legacy)
        if ours is None or ours not in target:
            unplaced.append(key)
            continue
        want = target[ours]
        if value.numel() != want.numel():
            wrong.append(f"{key} {tuple(value.shape)} -> {ours} {tuple(want.shape)}")
            continue
        out[ours] = value.reshape(want.shape).to(want.dtype)
    # Ours alone, not in their weights: the decoder's default text (a buffer) and the learned dropped-token
    # embedding of a model made flexible-length (`dropout="nested"`); they keep the model's initial values.
    optional = {"decoder.default_text", "decoder.token_fill.dropped"}
    missing = [official_key(k) or k for k in target if k not in out and k not in optional]
    problems = []
    if unplaced:
        problems.append(f"keys that cannot be placed: {unplaced}")
    if missing:
        problems.append(f"keys the model needs and the file lacks: {missing}")
    if wrong:
        problems.append(f"tensors of the wrong size: {wrong}")
    if problems:
        raise CheckpointError(f"{where}: " + "; ".join(problems))
    for k in optional:
        if k in target:
            out[k] = target[k]
    return out


def load_official(family: str, checkpoint: str | Path, config: str | Path | None = None,
                  dropout: str | None = None):
    """A released checkpoint (file or directory) -> the faithful vistok `Tokenizer` (eval mode). `dropout`
    ("nested" | "tail") makes it a flexible-length model to fine-tune from the released weights (see `build`)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    weights, config_path = find_files(Path(checkpoint), config)
    state = read_state_dict(weights)
    cfg = read_config(config_path) if config_path is not None else None
    arch = architecture(state, weights, cfg, config_path)
    _check_family(family, arch, weights)
    with torch.device("meta"):  # no random initialisation of what the checkpoint replaces (641 M for L-32)
        model = build(family, arch, dropout)
    model = model.to_empty(device="cpu")
    for name, buffer in model.named_buffers():  # ours alone (the decoder's default text): their initial value
        if name == "decoder.default_text":
            buffer.zero_()
    dropped = getattr(model.decoder.token_fill, "dropped", None)
    if dropped is not None:  # the nested-dropout embedding starts as TokenFill starts it
        with torch.no_grad():
            dropped.normal_(std=dropped.shape[-1] ** -0.5)
    if any(n not in model.state_dict() for n, _ in model.named_buffers()):
        raise RuntimeError("a non-persistent buffer would be left uninitialised")  # pragma: no cover - guard
    model.load_state_dict(map_state_dict(state, model, arch["legacy"], weights))
    return model.eval()


def import_checkpoint(family: str, checkpoint: str, config: str | None, output: str, overwrite: bool = False) -> Path:
    """Read a released checkpoint of `family` (titok | tatitok | onedpiece) and write a vistok export to `output`.
    Everything is checked before anything is written; the export is written atomically."""
    from vistok.saving import save_pretrained

    model = load_official(family, checkpoint, config)
    source = f"imported from the official {family} checkpoint {Path(checkpoint).name}"
    return save_pretrained(model, output, source=source, overwrite=overwrite)


# --- the reverse: a vistok model in the official layout ----------------------------------------------------------
_CONV_1X1 = re.compile(r"encoder\.conv_out\.weight|decoder\.ffn\.[02]\.weight")
_UNBATCHED = re.compile(r"latent_tokens|(encoder|decoder)\.(class_embedding|positional_embedding|"
                        r"latent_token_positional_embedding|text_guidance_positional_embedding)")


def official_state_dict(tokenizer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A faithful TiTok / TA-TiTok / One-D-Piece (as `titok_official` builds it) -> the state dict the official
    code loads. Refuses a model with parts the official code does not have, naming them."""
    enc = tokenizer.encoder
    if getattr(enc, "class_token", None) is None or type(tokenizer.quantizer).__name__ != "LearnedVQQuantizer":
        raise ValueError("only a model built as the official code builds it (class token, learned VQ codebook: "
                         "vistok.tokenizers.variants.titok.titok_official or an import) has an official layout")
    out, unplaced = {}, []
    for key, value in tokenizer.state_dict().items():
        if key == "decoder.default_text":
            continue
        name = official_key(key)
        if name is None:
            unplaced.append(key)
            continue
        if _CONV_1X1.fullmatch(name):
            value = value[:, :, None, None]  # a linear map stored as the official 1x1 conv
        elif _UNBATCHED.fullmatch(name):
            value = value[0]  # (1, R, D) -> (R, D)
        out[name] = value.detach().cpu().contiguous()
    if unplaced:
        raise ValueError(f"parts the official models do not have: {unplaced[:12]}")
    return out


def official_config(tokenizer: torch.nn.Module) -> dict[str, Any]:
    """The official config (`model.vq_model`, `dataset.preprocessing.crop_size`) of a faithful model."""
    enc, dec, quant = tokenizer.encoder, tokenizer.decoder, tokenizer.quantizer
    sizes = {512: "small", 768: "base", 1024: "large"}
    legacy = enc.projection == "legacy"
    for part, module in (("encoder", enc), ("decoder", dec)):
        width, depth = module.init_args["width"], module.init_args["depth"]
        size = sizes.get(width)
        if size is None or _DEPTHS[size] != depth:
            raise ValueError(f"the {part} is {width} wide and {depth} deep; the official code builds only "
                             + ", ".join(f"{n} ({w} wide, {_DEPTHS[n]} deep)" for w, n in sizes.items()))
    vq = {"codebook_size": quant.codebook_size, "token_size": quant.dim, "use_l2_norm": quant.l2_norm,
          "commitment_cost": quant.commitment_weight,
          "vit_enc_model_size": sizes[enc.init_args["width"]], "vit_dec_model_size": sizes[dec.init_args["width"]],
          "vit_enc_patch_size": enc.init_args["patch_size"], "vit_dec_patch_size": dec.init_args["patch_size"],
          "num_latent_tokens": enc.num_tokens, "finetune_decoder": legacy, "is_legacy": legacy}
    if dec.text_proj is not None:
        vq.update(quantize_mode="vq", clustering_vq=quant.clustering,
                  text_context_length=dec.text_pos.shape[1], text_embed_dim=dec.text_proj.in_features)
    if tokenizer.token_dropout is not None and type(tokenizer.token_dropout).__name__ == "TailDrop":
        vq["strict_length_assertion"] = False  # One-D-Piece decodes any prefix
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": enc.input_spec.height}}}


def export_official(tokenizer: torch.nn.Module, output: str | Path, overwrite: bool = False) -> Path:
    """Write `model.safetensors` (official layout) and `config.json` (official structure) to `output`, what the
    official `TiTok` / `TATiTok` / `OneDPiece` classes load (`Model(config)`, `load_state_dict`)."""
    from safetensors.torch import save_file

    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty; pass overwrite=True to replace its files")
    state, config = official_state_dict(tokenizer), official_config(tokenizer)  # both checked before writing
    output.mkdir(parents=True, exist_ok=True)
    save_file(state, str(output / "model.safetensors"))
    (output / "config.json").write_text(json.dumps(config, indent=2))
    return output
