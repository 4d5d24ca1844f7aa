"""`vistok import`: an anchor's released checkpoint -> a vistok export directory (`vistok.importers`)."""

from __future__ import annotations

from vistok.commands.args import parser

# family -> (importer module under vistok.importers, what the family is)
FAMILIES = {
    "titok": ("titok", "TiTok S-128 / B-64 / L-32 (bytedance/1d-tokenizer), legacy or not"),
    "tatitok": ("titok", "TA-TiTok single-stage VQ (bytedance/1d-tokenizer)"),
    "onedpiece": ("titok", "One-D-Piece (turingmotors/One-D-Piece)"),
    "flextok": ("flextok", "FlexTok (apple/ml-flextok); the VAE is given with --vae"),
    "omnitokenizer": ("omnitokenizer", "OmniTokenizer VQ (FoundationVision/OmniTokenizer)"),
    "larp": ("larp", "LARP (hywang66/LARP)"),
}


def main(argv: list[str]) -> None:
    families = "; ".join(f"{name}: {what}" for name, (_, what) in FAMILIES.items())
    p = parser("vistok import", "Import an official released checkpoint as a vistok export directory (every "
               f"tensor placed or refused by name; nothing written on an error). Families: {families}.")
    p.add_argument("family", choices=sorted(FAMILIES))
    p.add_argument("--checkpoint", required=True, help="the released weights: a file or the directory holding them")
    p.add_argument("--config", default=None, help="the official YAML / config.json when the weights do not carry it")
    p.add_argument("--vae", default=None, help="flextok: the diffusers AutoencoderKL directory the model reads")
    p.add_argument("--output", required=True, help="export directory to write (new or empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory at --output")
    a = p.parse_args(argv)
    if a.vae is not None and a.family != "flextok":
        p.error("--vae is for flextok only")
    import importlib
    import importlib.util

    name = f"vistok.importers.{FAMILIES[a.family][0]}"
    if importlib.util.find_spec(name) is None:
        raise ValueError(f"vistok import {a.family}: this version of vistok has no importer for that family yet")
    module = importlib.import_module(name)
    if a.family in ("titok", "tatitok", "onedpiece"):
        out = module.import_checkpoint(a.family, a.checkpoint, a.config, a.output, overwrite=a.overwrite)
    elif a.family == "flextok":
        if a.config is not None:
            p.error("flextok: the released safetensors carry their config; --config is not used")
        out = module.import_checkpoint(a.checkpoint, a.output, vae=a.vae, overwrite=a.overwrite)
    else:
        out = module.import_checkpoint(a.checkpoint, a.output, config=a.config, overwrite=a.overwrite)
    print(f"imported {a.family} {a.checkpoint} -> {out}")
