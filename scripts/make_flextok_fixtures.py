"""Build FlexTok's official model (apple/ml-flextok) with random weights at a tiny size and save the fixtures
that tests/test_flextok_official.py compares vistok against.

Run once, by hand, in a throwaway environment that has torch, diffusers, einops, safetensors, hydra-core and
mup (the official repository's dependencies), with a checkout of the official repository:

    python scripts/make_flextok_fixtures.py --official-repo PATH/TO/ml-flextok [--output tests/fixtures/flextok]

Nothing of the official code is copied here: the script imports it from PATH, describes the tiny model in the
released checkpoints' config format (hydra `_target_` dictionaries, the same module names), runs it on a CPU
with flex attention switched to its SDPA fallback and a materialised mask, and writes:

- vae/: a tiny random diffusers AutoencoderKL (16 latent channels, 2x downsampling, scaling_factor 0.7);
- model.safetensors: the FlexTok state dict in the released layout, its config in the safetensors metadata
  (as the released checkpoints carry it);
- io.safetensors: images, the encoder's VAE latents and token ids (torch seed 7 before `tokenize`), the
  decoder's velocity at given (x_t, t, tokens) with and without the null condition, and whole sampling runs
  (4 Euler steps, generator seed 3) without guidance, with CFG 3.0 and with APG 3.0: final latents and images;
- counts.json: parameter counts of the tiny model and of the paper's d12-d12, d18-d18 and d18-d28 (width 64 x
  depth, 256 registers, 16-channel f8 latents at 256 px, built on the meta device).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import types
from pathlib import Path

import torch

DIM, DEPTH, HEAD_DIM, TOKENS, IMAGE, LEVELS = 32, 2, 16, 8, 16, [8, 8, 8, 5, 5, 5]
GRID = 4  # 16 px / VAE factor 2 / patch 2
F = "flextok.model."


def _vae_config(vae_dir: str) -> dict:
    return {"_target_": "flextok.vae_wrapper.StableDiffusionVAE", "images_read_key": "rgb",
            "vae_latents_read_key": "vae_latents_reconst", "vae_latents_write_key": "vae_latents",
            "images_reconst_write_key": "rgb_reconst", "vae_kl_loss_write_key": "kl_loss", "latent_channels": 16,
            "hf_hub_path": vae_dir, "sample_posterior": True, "frozen": True}


def _op(name: str) -> dict:
    return {"_target_": f"{F}utils.dict_ops.{name}", "_partial_": True}


def model_config(vae_dir: str, enc_dim: int = DIM, dec_dim: int = DIM, enc_depth: int = DEPTH,
                 dec_depth: int = DEPTH, head_dim: int = HEAD_DIM, tokens: int = TOKENS, grid: int = GRID) -> dict:
    """A FlexTok in the released config format (module names as in the released checkpoints); by default the
    tiny one of the fixtures."""
    packer = F + "preprocessors.flex_seq_packing.BlockWiseSequencePacker"
    encoder = {
        "enc_channels_to_last": {"_target_": F + "utils.dict_ops.PerSampleOp", "read_key": "vae_latents",
                                 "write_key": "vae_latents_bhwc", "per_sample_op": _op("channels_first_to_last")},
        "enc_patch_emb": {"_target_": F + "preprocessors.patching.PatchEmbedder",
                          "input_tensor_list_read_key": "vae_latents_bhwc",
                          "patches_list_write_key": "enc_vae_latents_patched", "n_patches_write_key": "enc_n_patches",
                          "channels_in": 16, "dim": enc_dim, "patch_sizes": [2, 2], "flatten_patches": False},
        "enc_posemb_module": {"_target_": F + "utils.posembs.PositionalEmbeddingAdder",
                              "read_key": "enc_vae_latents_patched", "write_key": "enc_vae_latents_patched",
                              "dim": enc_dim, "max_sizes": [grid, grid], "posemb_type": "sincos",
                              "posemb_scaling": "absolute"},
        "enc_register_module": {"_target_": F + "preprocessors.registers.Registers1D",
                                "input_tensor_list_read_key": "enc_vae_latents_patched",
                                "register_sizes_read_write_key": "register_sizes",
                                "registers_write_key": "enc_registers", "dim": enc_dim, "n_min": tokens,
                                "n_max": tokens, "size_sampling_mode": "uniform", "ordering_mode": "nested"},
        "enc_seq_packer": {"_target_": packer, "input_list_read_keys": ["enc_vae_latents_patched", "enc_registers"],
                           "packed_seq_write_key": "enc_packed_seq", "block_mask_write_key": "enc_block_mask",
                           "inner_packed_shapes_write_key": "enc_ps_inner",
                           "outer_packed_shapes_write_key": "enc_ps_outer", "mask_mode": "causal_last",
                           "pad_to_multiple": 128, "return_materialized_mask": True},
        "enc_transformer": {"_target_": F + "trunks.transformers.FlexTransformer",
                            "input_seq_read_key": "enc_packed_seq", "output_seq_write_key": "enc_packed_seq",
                            "dim": enc_dim, "depth": enc_depth, "head_dim": head_dim,
                            "block_mask_read_key": "enc_block_mask"},
        "enc_unpacker": {"_target_": F + "postprocessors.seq_unpacking.SequenceUnpacker",
                         "packed_seq_read_key": "enc_packed_seq",
                         "inner_seq_write_keys": ["enc_vae_latents_patched", "enc_registers"],
                         "inner_packed_shapes_read_key": "enc_ps_inner",
                         "outer_packed_shapes_read_key": "enc_ps_outer"},
        "enc_to_latents": {"_target_": F + "postprocessors.heads.LinearHead", "read_key": "enc_registers",
                           "write_key": "enc_registers", "dim": enc_dim, "dim_out": len(LEVELS),
                           "use_mup_readout": False, "weight_init_style": "zero"},
    }
    decoder = {
        "dec_from_latents": {"_target_": F + "preprocessors.linear.LinearLayer", "read_key": "enc_registers_quant",
                             "write_key": "dec_registers_proj", "dim_in": len(LEVELS), "dim": dec_dim},
        "dec_registers_posemb_module": {"_target_": F + "utils.posembs.PositionalEmbeddingAdder",
                                        "read_key": "dec_registers_proj", "write_key": "dec_registers_proj",
                                        "dim": dec_dim, "max_sizes": [tokens], "posemb_type": "learnable_sum",
                                        "posemb_scaling": "absolute"},
        "dec_nested_dropout": {"_target_": F + "preprocessors.token_dropout.MaskedNestedDropout",
                               "read_write_key": "dec_registers_proj", "dim": dec_dim,
                               "eval_keep_k_read_key": "eval_keep_k", "train_keep_k_write_key": "train_keep_k",
                               "size_sampling_mode": "uniform_pow2"},
        "dec_latent_dropout": {"_target_": F + "preprocessors.nullcond.LearnedNullCond",
                               "read_write_key": "dec_registers_proj", "dim": dec_dim,
                               "eval_drop_flag_read_key": "eval_dropout_mask", "dropout_prob": 0.2},
        "dec_noise_channels_to_last": {"_target_": F + "utils.dict_ops.PerSampleOp",
                                       "read_key": "vae_latents_noised", "write_key": "vae_latents_noised_bhwc",
                                       "per_sample_op": _op("channels_first_to_last")},
        "dec_noise_patch_emb": {"_target_": F + "preprocessors.patching.PatchEmbedder",
                                "input_tensor_list_read_key": "vae_latents_noised_bhwc",
                                "patches_list_write_key": "dec_noised_patches", "n_patches_write_key": "dec_n_patches",
                                "channels_in": 16, "dim": dec_dim, "patch_sizes": [2, 2], "flatten_patches": False},
        "dec_patches_posemb_module": {"_target_": F + "utils.posembs.PositionalEmbeddingAdder",
                                      "read_key": "dec_noised_patches", "write_key": "dec_patches", "dim": dec_dim,
                                      "max_sizes": [grid, grid], "posemb_type": "sincos",
                                      "posemb_scaling": "absolute"},
        "dec_seq_packer": {"_target_": packer, "input_list_read_keys": ["dec_patches", "dec_registers_proj"],
                           "packed_seq_write_key": "dec_packed_seq", "block_mask_write_key": "dec_block_mask",
                           "inner_packed_shapes_write_key": "dec_ps_inner",
                           "outer_packed_shapes_write_key": "dec_ps_outer",
                           "emb_packing_fn_write_key": "emb_packing_fn", "mask_mode": "full", "pad_to_multiple": 128,
                           "per_subseq_embs": True, "return_materialized_mask": True},
        "dec_time_embedder": {"_target_": F + "preprocessors.time_embedding.TimestepEmbedder",
                              "timesteps_read_key": "timesteps", "time_embedding_write_key": "dec_temb", "dim": dec_dim,
                              "frequency_embedding_size": 256, "max_timestep": 1000.0},
        "dec_transformer": {"_target_": F + "trunks.transformers.FlexTransformer",
                            "input_seq_read_key": "dec_packed_seq", "output_seq_write_key": "dec_packed_seq",
                            "dim": dec_dim, "depth": dec_depth, "head_dim": head_dim,
                            "block_mask_read_key": "dec_block_mask",
                            "adaLN_emb_read_key": "dec_temb", "adaLN_packing_fn_read_key": "emb_packing_fn",
                            "adaLN_expansion": 2},
        "dec_unpacker": {"_target_": F + "postprocessors.seq_unpacking.SequenceUnpacker",
                         "packed_seq_read_key": "dec_packed_seq",
                         "inner_seq_write_keys": ["dec_patches", "dec_registers_proj"],
                         "inner_packed_shapes_read_key": "dec_ps_inner",
                         "outer_packed_shapes_read_key": "dec_ps_outer"},
        "dec_to_patches": {"_target_": F + "postprocessors.heads.ToPatchesLinearHead", "read_key": "dec_patches",
                           "write_key": "dec_patches", "dim": dec_dim, "channels_out": 16, "patch_sizes": [2, 2],
                           "use_mup_readout": False, "weight_init_style": "zero", "adaLN_emb_read_key": "dec_temb"},
        "dec_channels_to_first": {"_target_": F + "utils.dict_ops.PerSampleOp", "read_key": "dec_patches",
                                  "write_key": "vae_latents_reconst", "per_sample_op": _op("channels_last_to_first")},
    }
    wrapper = "flextok.model.utils.wrappers.SequentialModuleDictWrapper"
    return {
        "_target_": "flextok.flextok_wrapper.FlexTok",
        "vae": _vae_config(vae_dir),
        "encoder": {"_target_": wrapper, "module_dict": encoder},
        "decoder": {"_target_": wrapper, "module_dict": decoder},
        "regularizer": {"_target_": "flextok.regularizers.quantize_fsq.FSQ", "latents_read_key": "enc_registers",
                        "quants_write_key": "enc_registers_quant", "tokens_write_key": "tokens", "levels": LEVELS,
                        "drop_quant_p": 0.0, "packed_call": False},
        "flow_matching_noise_module": {"_target_": "flextok.flow_matching.noise_modules.MinRFNoiseModule",
                                       "clean_images_read_key": "vae_latents",
                                       "noised_images_write_key": "vae_latents_noised",
                                       "timesteps_write_key": "timesteps", "sigmas_write_key": "sigmas", "ln": True},
        "pipeline": {"_target_": "flextok.flow_matching.pipelines.MinRFPipeline", "_partial_": True,
                     "target_sizes_read_key": None, "latents_read_key": "enc_registers_quant",
                     "timesteps_read_key": "timesteps", "noised_images_read_key": "vae_latents_noised",
                     "reconst_write_key": "vae_latents_reconst", "out_channels": 16},
    }


def stub_torchvision() -> None:
    """flextok.utils.misc imports torchvision for helpers the model never calls; torchvision does not import
    beside this torch, so give it an empty stand-in (after diffusers is imported: diffusers probes for it)."""
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                        "torchvision.transforms.functional": tv.transforms.functional})


def make_vae(path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=16, norm_num_groups=8, sample_size=IMAGE, scaling_factor=0.7)
    vae.save_pretrained(str(path), safe_serialization=True)


def randomise(model: torch.nn.Module) -> None:
    """Every trainable weight random (the released init zeroes heads and adaLN, which would hide mistakes)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("vae.") or not p.requires_grad:
                continue
            std = p.shape[-1] ** -0.5 if p.ndim >= 2 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * std)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-repo", required=True, help="a checkout of apple/ml-flextok")
    ap.add_argument("--output", default="tests/fixtures/flextok")
    args = ap.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(args.official_repo).resolve()))
    import diffusers  # noqa: F401  (before the stand-in below: diffusers probes for torchvision)

    stub_torchvision()
    from flextok.model.layers.attention import FlexAttention
    from hydra.utils import instantiate
    from safetensors.torch import save_file

    make_vae(out / "vae")
    config = model_config(str(out / "vae"))
    model = instantiate(copy.deepcopy(config)).eval()
    for m in model.modules():
        if isinstance(m, FlexAttention):
            m.use_flex_attention = False  # the SDPA fallback with the materialised mask (no compiler on a CPU)
    randomise(model)

    released = copy.deepcopy(config)
    released["vae"]["hf_hub_path"] = "vae"  # a path relative to the fixture directory
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={k: str(v) for k, v in released.items()})

    io: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(0)
    images = torch.rand((2, 3, IMAGE, IMAGE), generator=g) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(7)
        data = model.encode({"rgb": list(images.split(1))})
    io["images"] = images
    io["vae_latents"] = torch.cat(data["vae_latents"])
    io["ids"] = torch.cat(data["tokens"])  # (2, N) int64
    io["encoder_out"] = torch.cat(data["enc_registers"])

    # The decoder's velocity at given (x_t, t, tokens): image 0 keeps all tokens, image 1 its first 3.
    keep = [TOKENS, 3]
    x_t = torch.randn((2, 16, IMAGE // 2, IMAGE // 2), generator=g)
    t = torch.tensor([0.8, 0.3])
    quants = [model.regularizer.indices_to_embedding(i[None]).float() for i in io["ids"]]
    for name, drop in (("velocity", None), ("velocity_null", [True, True])):
        d = {"enc_registers_quant": [q.clone() for q in quants], "eval_keep_k": keep,
             "vae_latents_noised": list(x_t.split(1)), "timesteps": t.clone()}
        if drop is not None:
            d["eval_dropout_mask"] = drop
        with torch.no_grad():
            io[name] = torch.cat(model.decoder(d)["vae_latents_reconst"])
    io["x_t"], io["t"], io["keep"] = x_t, t, torch.tensor(keep)

    # Whole sampling runs: image 0 with all tokens, image 1 with its first 5.
    ids_list = [io["ids"][0:1], io["ids"][1:2, :5]]
    for name, scale, apg in (("sample_plain", 1.0, False), ("sample_cfg", 3.0, False), ("sample_apg", 3.0, True)):
        d = model._prepare_data_dict_for_detokenization(ids_list)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            d = model.decode(d, timesteps=4, generator=gen, vae_image_sizes=IMAGE // 2, verbose=False,
                             guidance_scale=scale, perform_norm_guidance=apg)
        io[f"{name}_latents"] = torch.cat(d["vae_latents_reconst"])
        io[f"{name}_images"] = torch.cat(d["rgb_reconst"])
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / "io.safetensors"))
    counts = {"tiny": count(model.encoder, model.decoder)}
    linspace = torch.linspace  # the official trunk calls .item() on a linspace: keep that one on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    for name, (enc_depth, dec_depth) in PAPER_SIZES.items():  # built on the meta device: shapes only
        with torch.device("meta"):
            cfg = model_config("unused", 64 * enc_depth, 64 * dec_depth, enc_depth, dec_depth, 64, 256, 16)
            counts[name] = count(instantiate(cfg["encoder"]), instantiate(cfg["decoder"]))
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(json.dumps(counts), "->", out)


PAPER_SIZES = {"d12-d12": (12, 12), "d18-d18": (18, 18), "d18-d28": (18, 28)}


def count(encoder: torch.nn.Module, decoder: torch.nn.Module) -> dict[str, int]:
    """Parameters of the encoder and decoder: all, and the trainable ones (without the frozen sin-cos tables)."""
    return {f"{part}{suffix}": sum(p.numel() for p in m.parameters() if keep(p))
            for part, m in (("encoder", encoder), ("decoder", decoder))
            for suffix, keep in (("", lambda p: True), ("_trainable", lambda p: p.requires_grad))}


if __name__ == "__main__":
    main()
