"""vistok's FlexTok against the official code (apple/ml-flextok) on fixtures it computed.

tests/fixtures/flextok/ was written once by scripts/make_flextok_fixtures.py from the official repository
(random weights, tiny size, its SDPA path with a materialised mask): the released checkpoint layout with its
config in the safetensors metadata, a tiny random AutoencoderKL, inputs and outputs, and the official parameter
counts at paper size (built on the meta device). Everything here goes through `vistok.importers.flextok`.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vistok import Tokenizer
from vistok.importers.flextok import ImportRefused, import_checkpoint

FIX = Path(__file__).parent / "fixtures" / "flextok"
CKPT, VAE = FIX / "model.safetensors", FIX / "vae"


@pytest.fixture(scope="module")
def io():
    return load_file(str(FIX / "io.safetensors"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return import_checkpoint(str(CKPT), str(tmp_path_factory.mktemp("flextok") / "export"), vae=str(VAE))


@pytest.fixture(scope="module")
def tok(export):
    return Tokenizer.from_pretrained(export)


def test_import_writes_a_normal_export_that_encodes_to_the_official_token_ids(export, tok, io):
    for name in ("config.json", "model.safetensors", "codebook.safetensors", "tokens.json", "README.md"):
        assert (export / name).is_file(), name
    spec = json.loads((export / "tokens.json").read_text())
    assert spec["max_tokens"] == 8 and spec["codebook_size"] == 64000
    torch.manual_seed(7)  # the official encoder samples the VAE posterior with torch's RNG
    ids = tok.encode(io["images"])
    assert ids.dtype == torch.int64 and torch.equal(ids, io["ids"])
    assert len(set(ids.flatten().tolist())) > 8  # random weights give varied tokens: the check can fail
    z = tok.encoder.encode_latents(io["vae_latents"])
    assert torch.allclose(z, io["encoder_out"], atol=1e-4)


def test_the_vae_path_equals_diffusers_and_the_official_latents(tok, io):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(VAE)).eval()
    x = io["images"]
    torch.manual_seed(7)
    ours = tok.encoder.latents(x)
    # within float rounding of the machine that wrote the fixture (convolutions round differently per CPU)
    assert torch.allclose(ours, io["vae_latents"], atol=1e-5)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        ref = vae.encode(x).latent_dist.sample(generator=g1) * vae.config.scaling_factor
        assert torch.allclose(tok.encoder.vae.encode(x, g2), ref, atol=1e-6)
        z = io["vae_latents"]
        assert torch.allclose(tok.decoder.vae.decode(z), vae.decode(z / vae.config.scaling_factor).sample, atol=1e-6)


def test_a_latent_cache_keeps_the_posterior_and_changes_no_draw(io):
    from vistok.decoders.latent import FrozenVAE

    plain = FrozenVAE(VAE, sample_posterior=True)
    cached = FrozenVAE(VAE, cache="memory", sample_posterior=True)
    x = io["images"]
    for _ in range(2):  # a miss, then a hit: both equal the uncached sample with the same generator
        a = cached.encode(x, torch.Generator().manual_seed(4))
        assert torch.equal(a, plain.encode(x, torch.Generator().manual_seed(4)))
    assert (cached.cache.hits, cached.cache.misses) == (2, 2)
    assert cached.cache.identity["mode"] == "moments"
    assert not torch.equal(a, plain.encode(x, torch.Generator().manual_seed(5)))  # a sample, not the mean


def test_decoder_velocity_matches_at_given_xt_t_and_tokens(tok, io):
    codes = tok.quantizer.indices_to_codes(io["ids"])
    valid = torch.arange(codes.shape[1])[None] < io["keep"][:, None]  # image 1 keeps its first 3 tokens
    with torch.no_grad():
        v = tok.decoder(io["x_t"], io["t"], tok.decoder.condition(codes, valid))
        v_null = tok.decoder(io["x_t"], io["t"], tok.decoder.null_condition(2))
    assert (v - io["velocity"]).abs().max() < 1e-4
    assert (v_null - io["velocity_null"]).abs().max() < 1e-4
    assert (io["velocity"] - io["velocity_null"]).abs().max() > 0.1  # the condition matters


@pytest.mark.parametrize(("name", "scale", "guidance"),
                         [("sample_plain", 1.0, "cfg"), ("sample_cfg", 3.0, "cfg"), ("sample_apg", 3.0, "apg")])
def test_a_whole_sampling_run_matches_the_official_pipeline(tok, io, name, scale, guidance):
    ids = [io["ids"][0], io["ids"][1, :5]]  # variable lengths: 8 and 5 tokens
    tok.decoder.sampler.guidance = guidance
    images = tok.decode(ids, steps=4, guidance_scale=scale, seed=3)
    assert (images - io[f"{name}_images"].clamp(-1, 1)).abs().max() < 1e-3
    batch, valid = tok._batch_ids(ids)
    codes = tok.quantizer.indices_to_codes(batch)
    ctx, null = tok.decoder.condition(codes, valid), tok.decoder.null_condition(2)
    latents = tok.decoder.sampler.sample(tok.decoder, (16, 8, 8), ctx, null, 4, scale, 3)
    assert (latents - io[f"{name}_latents"]).abs().max() < 1e-3
    tok.decoder.sampler.guidance = "apg"


def test_guidance_modes_differ_and_a_seed_fixes_the_decode(io):
    assert (io["sample_cfg_latents"] - io["sample_apg_latents"]).abs().max() > 1e-2
    assert (io["sample_cfg_latents"] - io["sample_plain_latents"]).abs().max() > 1e-2


def test_parameter_counts_equal_the_official_ones_at_paper_size(tmp_path, monkeypatch):
    """The official counts were measured from the official code (fixture script, meta device); the sin-cos
    tables the official code keeps as frozen parameters are buffers here."""
    from diffusers import AutoencoderKL

    from vistok.quantizers.fsq import FSQQuantizer
    from vistok.tokenizers import build_tokenizer
    from vistok.tokenizers.variants import flextok

    def cpu_fsq(levels):  # vector-quantize-pytorch reads its codebook size with .item(): not on meta
        with torch.device("cpu"):
            return FSQQuantizer(levels)

    monkeypatch.setattr(flextok, "FSQQuantizer", cpu_fsq)

    counts = json.loads((FIX / "counts.json").read_text())
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(8,) * 4, layers_per_block=1, latent_channels=16,
                  norm_num_groups=8).save_pretrained(str(tmp_path / "vae"))  # 16 channels, 8x down
    for name in ("d12-d12", "d18-d18", "d18-d28"):
        with torch.device("meta"):
            t = build_tokenizer(f"flextok-{name}", vae_path=str(tmp_path / "vae"))
        enc = sum(p.numel() for p in t.encoder.parameters())
        dec = sum(p.numel() for p in t.decoder.parameters())
        assert (enc, dec) == (counts[name]["encoder_trainable"], counts[name]["decoder_trainable"]), name
        assert sum(p.numel() for p in t.quantizer.parameters()) == 0  # parameter-free FSQ
    assert counts["d18-d28"]["decoder_trainable"] == 2_169_276_992


def test_imported_export_reloads_and_decodes_with_steps_guidance_and_seed(tok, io):
    ids = tok.encode(io["images"], num_tokens=4)
    a = tok.decode(ids, steps=3, guidance_scale=2.5, seed=11)
    b = tok.decode(ids, steps=3, guidance_scale=2.5, seed=11)
    c = tok.decode(ids, steps=3, guidance_scale=2.5, seed=12)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)


def _refused(tmp_path: Path, match: str, **kwargs) -> None:
    out = tmp_path / "out"
    args = {"checkpoint": str(CKPT), "output": str(out), "vae": str(VAE), **kwargs}
    with pytest.raises(ImportRefused, match=match):
        import_checkpoint(**args)
    assert not out.exists(), "nothing is written on a refusal"


def test_refuses_a_checkpoint_of_another_family(tmp_path):
    other = tmp_path / "titok.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"_target_": "'modeling.titok.TiTok'"})
    _refused(tmp_path, r"titok.safetensors: not a FlexTok checkpoint.*modeling.titok.TiTok", checkpoint=str(other))
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    _refused(tmp_path, r"bare.safetensors: no config in its safetensors metadata", checkpoint=str(bare))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    _refused(tmp_path, r"junk.safetensors: not a safetensors checkpoint", checkpoint=str(junk))


def _vae_copy(tmp_path: Path, **changes) -> Path:
    vae = tmp_path / "vae"
    shutil.copytree(VAE, vae)
    cfg = json.loads((vae / "config.json").read_text())
    cfg.update(changes)
    (vae / "config.json").write_text(json.dumps(cfg))
    return vae


def test_refuses_a_vae_whose_channels_scale_or_weights_disagree(tmp_path):
    from diffusers import AutoencoderKL

    four = tmp_path / "vae4"
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                  norm_num_groups=8).save_pretrained(str(four))
    _refused(tmp_path, r"vae4: the VAE has 4 latent channels; the checkpoint .* expects 16", vae=str(four))
    other = tmp_path / "other"
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 16), layers_per_block=1, latent_channels=16, norm_num_groups=8,
                  scaling_factor=0.7).save_pretrained(str(other))
    _refused(tmp_path, r"other: the VAE's weight .* differs from the one the checkpoint", vae=str(other))
    _refused(tmp_path, r"no diffusers AutoencoderKL here", vae=str(tmp_path / "nowhere"))
    _refused(tmp_path, r"FlexTok needs its VAE: pass vae=PATH", vae=None)


def test_refuses_a_vae_whose_scale_disagrees_with_the_checkpoint(tmp_path):
    meta = safe_open(str(CKPT), "pt").metadata()
    vae_cfg = eval(meta["vae"], {"__builtins__": {}})  # noqa: S307  (our own fixture's literal)
    vae_cfg["scaling_factor"] = 0.5
    ckpt = tmp_path / "scaled.safetensors"
    save_file(load_file(str(CKPT)), str(ckpt), metadata={**meta, "vae": repr(vae_cfg)})
    _refused(tmp_path, r"scaling_factor 0.7 disagrees with the checkpoint's vae.scaling_factor 0.5",
             checkpoint=str(ckpt))


def test_refuses_a_checkpoint_with_a_missing_weight(tmp_path):
    weights = load_file(str(CKPT))
    key = "decoder.module_dict.dec_latent_dropout.nullcond"
    del weights[key]
    ckpt = tmp_path / "cut.safetensors"
    save_file(weights, str(ckpt), metadata=safe_open(str(CKPT), "pt").metadata())
    _refused(tmp_path, rf"cut.safetensors: missing weight '{key}'", checkpoint=str(ckpt))


def test_refuses_an_unsupported_option_naming_module_and_field(tmp_path):
    meta = safe_open(str(CKPT), "pt").metadata()
    enc = eval(meta["encoder"], {"__builtins__": {}})  # noqa: S307
    enc["module_dict"]["enc_transformer"]["qkv_bias"] = True
    ckpt = tmp_path / "bias.safetensors"
    save_file(load_file(str(CKPT)), str(ckpt), metadata={**meta, "encoder": repr(enc)})
    _refused(tmp_path, r"config encoder.enc_transformer.qkv_bias = True is not supported", checkpoint=str(ckpt))


def test_refuses_an_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        import_checkpoint(str(CKPT), str(out), vae=str(VAE))
    assert (out / "keep.txt").read_text() == "x"


def test_import_at_a_smaller_image_size_crops_the_position_tables(tmp_path, io):
    tok = Tokenizer.from_pretrained(import_checkpoint(str(CKPT), str(tmp_path / "small"), vae=str(VAE), image_size=8))
    assert tok.image_size == 8 and tok.encode(io["images"][:, :, :8, :8]).shape == (2, 8)
    _refused(tmp_path, r"image_size 32 is larger than its position tables cover \(\[16, 16\]\)", image_size=32)
