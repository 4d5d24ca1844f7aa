"""Build the official TiTok, TA-TiTok and One-D-Piece models from their authors' code and record fixtures.

Run once, by hand, in a throwaway environment with the official repositories checked out (never at test time):

    python -m venv /path/venv && /path/venv/bin/pip install torch==2.13.0 omegaconf einops safetensors
    /path/venv/bin/python scripts/make_titok_fixtures.py --official-repo /path/1d-tokenizer \\
        --onedpiece-repo /path/One-D-Piece

Each case builds the official model at its smallest width ("small") and 32 px with the deterministic weights of
`tests/titok_fixture_weights.py` (loaded with `strict=True`, so they cover every key), and writes under
tests/fixtures/titok/<case>/:
- `config.yaml`: the official config the model was built from (what an importer reads beside a checkpoint);
- `layout.json`: the state dict's layout in the released naming (key -> shape) and a fingerprint of the weights;
- `io.safetensors`: `images` (B, 3, H, W) in [-1, 1] (the official model saw (images + 1) / 2), the encoder's
  `latents` (B, N, d) before quantization, the token `ids` (B, N), `pixels01` (B, 3, H, W) decoded from the ids
  in the official [0, 1] range (unclamped), and per case extras (`text`; `prefix_pixels01` for One-D-Piece).

Only torch, omegaconf and einops are needed: the imports a forward pass does not use (the Hugging Face hub mixin,
accelerate, the training losses with torchvision and requests) are replaced by empty stand-ins, and the
`modeling` packages are registered without running their `__init__` (which imports the training losses).
This file contains none of the official code; it calls it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from titok_fixture_weights import fingerprint, fixture_state_dict, uniform  # noqa: E402

BATCH, CROP = 2, 32


def _vq(**kw):
    base = {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
            "vit_enc_model_size": "small", "vit_dec_model_size": "small", "vit_enc_patch_size": 16,
            "vit_dec_patch_size": 16, "num_latent_tokens": 128, "finetune_decoder": True}
    return {**base, **kw}


# case -> (repository, class, vq_model config). Sizes: the released configs with the width "small" and 32 px.
CASES = {
    # TiTok-S-128 (configs/infer/TiTok/titok_s128.yaml): legacy projection, proxy head, MaskGIT-VQGAN decoder.
    "titok_s128_legacy": ("official", "modeling.titok.TiTok", _vq()),
    # A TiTok VQ-8k single-stage model (titok_bl128_vq8k.yaml) at width small: per-token projection, pixel head.
    "titok_vq8k_nonlegacy": ("official", "modeling.titok.TiTok", _vq(
        codebook_size=8192, token_size=64, use_l2_norm=False, num_latent_tokens=32, finetune_decoder=False,
        is_legacy=False)),
    # TA-TiTok VQ (configs/infer/TA-TiTok/tatitok_bl128_vq.yaml) at width small: text tokens in the decoder.
    "tatitok_vq": ("official", "modeling.tatitok.TATiTok", _vq(
        quantize_mode="vq", codebook_size=8192, token_size=64, use_l2_norm=False, clustering_vq=False,
        num_latent_tokens=32, finetune_decoder=False, is_legacy=False)),
    # One-D-Piece-S-256 (configs/one-d-piece_s256.yaml of turingmotors/One-D-Piece).
    "onedpiece_s256": ("onedpiece", "modeling.one_d_piece.OneDPiece", _vq(
        num_latent_tokens=256, strict_length_assertion=False)),
}
PREFIX = 5  # One-D-Piece: also decode the first 5 tokens only
MASKGIT = "maskgit_vqgan"  # the proxy-code teacher on its own (modeling.titok.PretrainedTokenizer), at 64 px
MASKGIT_CONF = {"channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "dropout": 0.0, "hidden_channels": 128,
                "num_channels": 3, "num_res_blocks": 2, "resolution": 256, "z_channels": 256}  # the released f16


def _stub_unused_imports() -> None:
    """Stand-ins for imports that only saving, hub uploads and multi-GPU training use."""
    hub = types.ModuleType("huggingface_hub")

    class PyTorchModelHubMixin:  # accepts the class keywords (tags=, repo_url=, license=) and does nothing
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__()

    hub.PyTorchModelHubMixin = PyTorchModelHubMixin
    sys.modules["huggingface_hub"] = hub
    for name in ("accelerate", "accelerate.utils", "accelerate.utils.operations"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["accelerate.utils.operations"].gather = lambda x: x


def _load_official(repo: Path):
    """Register `modeling` and its subpackages from `repo` without running their __init__ files."""
    for name in [m for m in sys.modules if m == "modeling" or m.startswith("modeling.")]:
        del sys.modules[name]
    for pkg in ("modeling", "modeling.modules", "modeling.quantizer"):
        module = types.ModuleType(pkg)
        module.__path__ = [str(repo / pkg.replace(".", "/"))]
        sys.modules[pkg] = module
    sys.path.insert(0, str(repo))


def _config(vq: dict):
    from omegaconf import OmegaConf

    return OmegaConf.create({"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": CROP}}})


@torch.no_grad()
def make_case(name: str, repo: Path, class_path: str, vq: dict, out: Path) -> None:
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    _load_official(repo)
    module, cls = class_path.rsplit(".", 1)
    config = _config(vq)
    model = getattr(importlib.import_module(module), cls)(config).eval()
    layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    state = fixture_state_dict(layout)
    model.load_state_dict(state, strict=True)

    images = uniform(f"{name}/images", (BATCH, 3, CROP, CROP))  # [-1, 1): vistok's range
    x01 = (images + 1) / 2  # the official range
    z = model.encoder(pixel_values=x01, latent_tokens=model.latent_tokens)  # (B, d, 1, N)
    _, result = model.quantize(z)
    ids = result["min_encoding_indices"].reshape(BATCH, -1)  # (B, N)
    io = {"images": images, "latents": z[:, :, 0].transpose(1, 2).contiguous(), "ids": ids.long()}
    if cls == "TATiTok":
        text = uniform(f"{name}/text", (1, 77, 768)).expand(BATCH, -1, -1).contiguous()  # one caption embedding
        io["text"] = text[:1].contiguous()
        io["pixels01"] = model.decode_tokens(ids, text)
    elif cls == "OneDPiece":
        io["pixels01"] = model.decode_tokens(ids)
        io["prefix_pixels01"] = model.decode_tokens(ids, length=PREFIX)
    else:
        io["pixels01"] = model.decode_tokens(ids)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (folder / "layout.json").write_text(json.dumps(
        {"source": f"{class_path} from {repo.name}", "params": sum(v.numel() for v in state.values()),
         "fingerprint": fingerprint(state), "prefix": PREFIX if cls == "OneDPiece" else None,
         "layout": layout}, indent=1))
    save_file({k: v.float().contiguous() if v.is_floating_point() else v.contiguous() for k, v in io.items()},
              str(folder / "io.safetensors"))
    print(f"{name}: {len(layout)} keys, {sum(v.numel() for v in state.values()) / 1e6:.2f} M parameters, "
          f"ids {tuple(ids.shape)}, pixels {tuple(io['pixels01'].shape)}")


@torch.no_grad()
def make_maskgit(repo: Path, out: Path) -> None:
    """The MaskGIT-VQGAN alone: its released loader reads the deterministic weights from a file."""
    import tempfile

    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    _load_official(repo)
    vqgan = importlib.import_module("modeling.modules.maskgit_vqgan")
    conf = OmegaConf.create(MASKGIT_CONF)
    parts = {"encoder": vqgan.Encoder(conf), "decoder": vqgan.Decoder(conf)}
    layout = {f"{p}.{k}": list(v.shape) for p, m in parts.items() for k, v in m.state_dict().items()}
    layout["quantize.embedding.weight"] = [1024, 256]
    state = fixture_state_dict(layout)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, f"{tmp}/maskgit.bin")
        model = importlib.import_module("modeling.titok").PretrainedTokenizer(f"{tmp}/maskgit.bin")
    images = uniform(f"{MASKGIT}/images", (BATCH, 3, 64, 64))
    ids = model.encode((images + 1) / 2).reshape(BATCH, -1)
    io = {"images": images, "ids": ids.long(), "pixels01": model.decode(ids)}  # decode clamps to [0, 1]
    folder = out / MASKGIT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layout.json").write_text(json.dumps(
        {"source": f"modeling.titok.PretrainedTokenizer from {repo.name}",
         "params": sum(v.numel() for v in state.values()), "fingerprint": fingerprint(state), "layout": layout},
        indent=1))
    save_file({k: v.contiguous() for k, v in io.items()}, str(folder / "io.safetensors"))
    print(f"{MASKGIT}: {len(layout)} keys, ids {tuple(ids.shape)} ({ids.unique().numel()} distinct)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-repo", type=Path, required=True, help="a checkout of bytedance/1d-tokenizer")
    p.add_argument("--onedpiece-repo", type=Path, help="a checkout of turingmotors/One-D-Piece")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "titok")
    p.add_argument("--cases", nargs="*", default=[*sorted(CASES), MASKGIT])
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    _stub_unused_imports()
    repos = {"official": args.official_repo, "onedpiece": args.onedpiece_repo}
    for name in args.cases:
        if name == MASKGIT:
            make_maskgit(args.official_repo.resolve(), args.out)
            continue
        which, class_path, vq = CASES[name]
        if repos[which] is None:
            print(f"{name}: skipped (pass --onedpiece-repo)")
            continue
        make_case(name, repos[which].resolve(), class_path, vq, args.out)


if __name__ == "__main__":
    main()
