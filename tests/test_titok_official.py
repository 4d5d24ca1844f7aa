"""TiTok, TA-TiTok and One-D-Piece as their authors built them: the import of the official layout reproduces the
official forward pass (fixtures recorded by scripts/make_titok_fixtures.py from the official code), and the
paper-size configs have the official parameter counts."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from tests.titok_fixture_weights import fingerprint, fixture_state_dict
from vistok import Tokenizer
from vistok.importers.titok import import_checkpoint, load_official

FIXTURES = Path(__file__).parent / "fixtures" / "titok"
CASES = {"titok_s128_legacy": "titok", "titok_vq8k_nonlegacy": "titok", "tatitok_vq": "tatitok",
         "onedpiece_s256": "onedpiece"}
TOL = 1e-4


def _official_checkpoint(case: str, folder: Path, fmt: str = "bin") -> tuple[Path, dict]:
    """The fixture's weights written in the released layout (a plain state dict), beside its official YAML."""
    meta = json.loads((FIXTURES / case / "layout.json").read_text())
    state = fixture_state_dict(meta["layout"])
    assert fingerprint(state) == pytest.approx(meta["fingerprint"], rel=1e-9), "the fixture weights changed"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "bin":
        torch.save(state, folder / "tokenizer.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    (folder / "config.yaml").write_text((FIXTURES / case / "config.yaml").read_text())
    return folder, meta


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """case -> (model, io tensors, meta), each built once."""
    out = {}
    for case, family in CASES.items():
        folder, meta = _official_checkpoint(case, tmp_path_factory.mktemp(case))
        out[case] = (load_official(family, folder), load_file(str(FIXTURES / case / "io.safetensors")), meta)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
@torch.no_grad()
def test_import_reproduces_the_official_forward_pass(imported, case):
    tok, io, meta = imported[case]
    x = io["images"]
    z = tok.encoder(x)  # (B, N, d) before quantization
    assert (z - io["latents"]).abs().max() < TOL
    ids = tok.encode(x)
    assert torch.equal(ids, io["ids"])
    assert ids.unique().numel() > 1  # the comparison is not between constant outputs
    codes = tok.quantizer.indices_to_codes(ids)
    text = io.get("text")
    if text is not None:
        pixels = tok.decoder(codes, text=text.expand(x.shape[0], -1, -1))
    else:
        pixels = tok.decoder(codes)
    diff = ((pixels + 1) / 2 - io["pixels01"]).abs().max()
    assert diff < TOL, f"{case}: decoded pixels differ by {float(diff):.2e}"
    if "prefix_pixels01" in io:  # One-D-Piece decodes the first K tokens
        k = meta["prefix"]
        prefix = (tok.decoder(codes[:, :k]) + 1) / 2
        assert (prefix - io["prefix_pixels01"]).abs().max() < TOL


@pytest.mark.parametrize("name,official", [("titok-s-128", 83.67), ("titok-b-64", 204.81), ("titok-l-32", 641.05),
                                           ("onedpiece-s-256", 83.87)])
def test_paper_size_parameter_counts_equal_the_official_ones(name, official):
    from vistok.tokenizers import build_tokenizer

    with torch.device("meta"):
        tok = build_tokenizer(name)
    assert round(sum(p.numel() for p in tok.parameters()) / 1e6, 2) == official


def test_an_imported_model_is_a_normal_export(imported, tmp_path):
    """import_checkpoint -> Tokenizer.from_pretrained -> encode -> decode gives the official ids and pixels,
    prefixes included (One-D-Piece)."""
    case = "onedpiece_s256"
    folder, meta = _official_checkpoint(case, tmp_path / "official", fmt="safetensors")
    out = import_checkpoint("onedpiece", str(folder), None, str(tmp_path / "export"))
    tok = Tokenizer.from_pretrained(out)
    io = load_file(str(FIXTURES / case / "io.safetensors"))
    ids = tok.encode(io["images"])
    assert torch.equal(ids, io["ids"])
    assert ((tok.decode(ids) + 1) / 2 - io["pixels01"].clamp(0, 1)).abs().max() < TOL
    k = meta["prefix"]
    assert ((tok.decode(ids[:, :k]) + 1) / 2 - io["prefix_pixels01"].clamp(0, 1)).abs().max() < TOL
    assert json.loads((out / "tokens.json").read_text())["vocab_size"] >= 4096


@pytest.fixture(scope="module")
def small_state():
    """The TA-TiTok fixture's weights in the released layout (the smallest fixture), generated once."""
    meta = json.loads((FIXTURES / "tatitok_vq" / "layout.json").read_text())
    return fixture_state_dict(meta["layout"])


def _refused(tmp_path, family, checkpoint, match, config=None):
    out = tmp_path / "export"
    with pytest.raises(ValueError, match=match):
        import_checkpoint(family, str(checkpoint), config, str(out))
    assert not out.exists(), "nothing may be written on bad input"


def test_bad_files_are_refused_naming_the_file(tmp_path):
    truncated = tmp_path / "truncated.bin"
    torch.save({"encoder.ln_pre.weight": torch.ones(512)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    _refused(tmp_path, "titok", truncated, r"truncated\.bin: not a plain state dict")
    listed = tmp_path / "list.pt"
    torch.save([torch.ones(2)], listed)
    _refused(tmp_path, "titok", listed, r"list\.pt: holds a list, not a state dict")
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": {"a": torch.ones(1)}, "step": 3}, nested)
    _refused(tmp_path, "titok", nested, r"nested\.pt: not a plain state dict: entries that are not tensors")
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    _refused(tmp_path, "titok", damaged, r"model\.safetensors: not a readable safetensors file")


def test_another_family_size_or_config_is_refused_naming_the_key(tmp_path, small_state):
    ckpt = tmp_path / "tatitok.bin"
    torch.save(small_state, ckpt)
    _refused(tmp_path, "titok", ckpt, r"tatitok\.bin: a TA-TiTok checkpoint \(decoder\.text_guidance_proj\.weight\)")
    _refused(tmp_path, "onedpiece", ckpt, r"a TA-TiTok checkpoint")
    yaml = tmp_path / "base.yaml"
    yaml.write_text((FIXTURES / "tatitok_vq" / "config.yaml").read_text().replace(
        "vit_enc_model_size: small", "vit_enc_model_size: base").replace("num_latent_tokens: 32",
                                                                          "num_latent_tokens: 64"))
    _refused(tmp_path, "tatitok", ckpt, r"base\.yaml disagrees with .*tatitok\.bin: vit_enc_model_size: 'base' in the "
             r"config, 'small' in the weights \(encoder\.ln_pre\.weight\); num_latent_tokens: 64", config=str(yaml))
    no_text = {k: v for k, v in small_state.items() if "text_guidance" not in k}
    torch.save(no_text, ckpt)
    _refused(tmp_path, "tatitok", ckpt, r"not a TA-TiTok checkpoint")


def test_unplaced_and_missing_keys_are_named_in_one_message(tmp_path, small_state):
    state = dict(small_state)
    state["decoder.extra_head.weight"] = torch.ones(3)
    del state["decoder.ln_post.bias"]
    ckpt = tmp_path / "edited.bin"
    torch.save(state, ckpt)
    _refused(tmp_path, "tatitok", ckpt, r"edited\.bin: keys that cannot be placed: \['decoder\.extra_head\.weight'\]; "
             r"keys the model needs and the file lacks: \['decoder\.ln_post\.bias'\]")


def test_maskgit_vqgan_on_its_own_matches_the_official_tokenizer(tmp_path):
    """The proxy-code teacher (vistok.decoders.maskgit_vqgan) loads the released layout and gives the official
    ids and pixels."""
    from vistok.decoders.maskgit_vqgan import MaskGITVQGAN

    meta = json.loads((FIXTURES / "maskgit_vqgan" / "layout.json").read_text())
    state = fixture_state_dict(meta["layout"])
    assert fingerprint(state) == pytest.approx(meta["fingerprint"], rel=1e-9)
    torch.save(state, tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    vqgan = MaskGITVQGAN.from_official(tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    io = load_file(str(FIXTURES / "maskgit_vqgan" / "io.safetensors"))
    ids = vqgan.encode(io["images"])
    assert torch.equal(ids, io["ids"]) and ids.unique().numel() > 1
    with torch.no_grad():
        pixels = (vqgan.decode(ids) + 1) / 2
    assert (pixels.clamp(0, 1) - io["pixels01"]).abs().max() < TOL
    state.pop("quantize.embedding.weight")
    torch.save(state, tmp_path / "partial.bin")
    with pytest.raises(ValueError, match=r"partial\.bin: not a MaskGIT-VQGAN f16 state dict \(missing keys "
                                         r"\['quantize\.embedding\.weight'\]"):
        MaskGITVQGAN.from_official(tmp_path / "partial.bin")


@pytest.mark.parametrize("config,variant", [("titok_s128.yaml", "titok-s-128"), ("titok_b64.yaml", "titok-b-64"),
                                            ("titok_l32.yaml", "titok-l-32"),
                                            ("onedpiece_s256.yaml", "onedpiece-s-256")])
def test_paper_size_configs_build_the_official_architecture(config, variant):
    """The config's tokenizer is the registered faithful variant (whose count is checked above), built on the
    meta device through `vistok fit`'s parser."""
    from tests.test_configs import _parsed_tokenizer
    from vistok.configurable import to_config
    from vistok.tokenizers import build_tokenizer

    with torch.device("meta"):
        from_yaml = _parsed_tokenizer(Path(__file__).parents[1] / "configs" / config)
        built = build_tokenizer(variant)
    assert to_config(from_yaml) == to_config(built)
    assert sum(p.numel() for p in from_yaml.parameters()) == sum(p.numel() for p in built.parameters())


@pytest.mark.parametrize("case", ["titok_s128_legacy", "tatitok_vq"])
def test_export_in_the_official_layout_gives_back_the_released_state_dict(imported, case, tmp_path):
    from vistok.importers.titok import export_official, official_state_dict

    tok, _, meta = imported[case]
    official = official_state_dict(tok)
    assert {k: list(v.shape) for k, v in official.items()} == meta["layout"]
    reference = fixture_state_dict(meta["layout"])
    assert all(torch.equal(official[k], reference[k]) for k in reference)
    out = export_official(tok, tmp_path / "official")
    config = json.loads((out / "config.json").read_text())
    fixture = yaml.safe_load((FIXTURES / case / "config.yaml").read_text())
    assert {k: config["model"]["vq_model"].get(k) for k in fixture["model"]["vq_model"]} == fixture["model"]["vq_model"]
    assert config["dataset"] == fixture["dataset"]
    with pytest.raises(ValueError, match="only a model built as the official code builds it"):
        from vistok.tokenizers import build_tokenizer

        official_state_dict(build_tokenizer("titok-tiny"))


def test_the_faithful_architecture_takes_nested_dropout_and_any_prefix():
    """A released architecture with FlexTok's nested dropout (a row no anchor has): trains, and any prefix decodes."""
    from vistok.tokenizers.dropout import NestedDropout
    from vistok.tokenizers.variants.titok import titok_official

    torch.manual_seed(0)
    tok = titok_official(image_size=32, num_tokens=8, encoder_depth=1, decoder_depth=1, token_fill="mask",
                         token_dropout=NestedDropout(8, "pow2"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = tok.train()(x)
    assert out.recon.shape == x.shape and out.valid is not None
    (out.recon.pow(2).mean() + out.quant.loss).backward()
    assert tok.decoder.token_fill.dropped.grad is not None
    ids = tok.eval().encode(x)
    for k in (1, 3, 8):
        assert tok.decode(ids[:, :k]).shape == x.shape


def test_a_released_checkpoint_becomes_a_flexible_length_model_to_fine_tune(tmp_path, small_state):
    """load_official(..., dropout="nested"): the released encoder and codebook unchanged (the official ids), a new
    dropped-token embedding, any prefix decodes, and it trains."""
    torch.save(small_state, tmp_path / "tatitok.bin")
    tok = load_official("tatitok", tmp_path / "tatitok.bin", FIXTURES / "tatitok_vq" / "config.yaml", dropout="nested")
    io = load_file(str(FIXTURES / "tatitok_vq" / "io.safetensors"))
    ids = tok.encode(io["images"])
    assert torch.equal(ids, io["ids"])
    assert tok.decoder.token_fill.dropped.abs().sum() > 0
    for k in (1, 4, ids.shape[1]):
        assert tok.decode(ids[:, :k]).shape == io["images"].shape
    out = tok.train()(io["images"])
    out.recon.pow(2).mean().backward()
    assert tok.decoder.token_fill.dropped.grad is not None
    with pytest.raises(ValueError, match="dropout must be one of"):
        load_official("tatitok", tmp_path / "tatitok.bin", dropout="sometimes")
