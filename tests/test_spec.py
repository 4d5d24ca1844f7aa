"""The model-side seams: one input spec, one source of truth for N / token_dim / image size, the flow decoder
as network + objective + sampler, and exports written before any of that still loading."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vistok import Tokenizer
from vistok.configurable import from_config, to_config
from vistok.decoders.flow import FlowDecoder
from vistok.decoders.rectified_flow import EulerSampler, RectifiedFlow
from vistok.decoders.vit import ViTPixelDecoder
from vistok.input_spec import InputSpec
from vistok.quantizers.fsq import FSQQuantizer
from vistok.token_spec import input_spec
from vistok.tokenizers import FlexTokEncoder, NestedDropout, TailDrop, TiTokEncoder, build_tokenizer

OLD = Path(__file__).parent / "fixtures" / "old_exports"  # written by vistok before this change


# --- the input spec --------------------------------------------------------------------------------------------
def test_input_spec_checks_shapes_and_frames_and_names_the_expected_shape():
    img = InputSpec(3, 32, 48)
    img.check(torch.zeros(2, 3, 32, 48))
    assert not img.is_video and img.size == (32, 48) and not img.is_square
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 32, 48\), got \(2, 3, 48, 32\)"):
        img.check(torch.zeros(2, 3, 48, 32))
    with pytest.raises(ValueError, match="needs square inputs; the model takes 32 x 48"):
        img.side  # noqa: B018
    video = InputSpec(3, 16, 16, "1 + 4k")
    assert video.is_video and video.frames == "1+4k" and video.frame_counts(17) == [1, 5, 9, 13, 17]
    video.check(torch.zeros(1, 3, 9, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, T, 16, 16\) with T = 1\+4k \(1, 5, 9, 13, \.\.\.\), got "
                                         r"\(1, 3, 8, 16, 16\)"):
        video.check(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(ValueError, match="frames rule"):
        InputSpec(3, 16, 16, "4k")
    assert InputSpec.from_json(video.to_json()) == video


def test_the_tokenizer_checks_the_spec_in_one_place_for_encode_adaptive_and_forward():
    tok = build_tokenizer("titok-tiny")
    assert tok.input_spec == tok.encoder.input_spec == InputSpec(3, 32, 32, "1") and tok.image_size == 32
    bad = torch.zeros(2, 3, 32, 33)
    for call in (tok.encode, lambda x: tok.encode_adaptive(x, 20.0), tok.forward):
        with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 32, 32\), got \(2, 3, 32, 33\)"):
            call(bad)
    with pytest.raises(ValueError, match=r"float tensor \(B, 3, 32, 32\)"):
        tok.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    import vistok.tokenizers.titok as titok

    assert not hasattr(titok, "check_images"), "the encoder does not check a second time"


# --- non-square models -------------------------------------------------------------------------------------------
def _non_square(decoder: str) -> Tokenizer:
    hw, n, d = (16, 32), 6, 4
    if decoder == "flow":
        enc = FlexTokEncoder(image_size=hw, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=n, token_dim=d)
        dec = FlowDecoder(image_size=hw, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=n, token_dim=d,
                          qk_norm=False, sampler=EulerSampler(steps=2))
    else:
        conv = decoder == "conv"
        enc = TiTokEncoder(image_size=hw, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=n, token_dim=d,
                           stem="conv" if conv else "linear", linear_path=conv)
        dec = ViTPixelDecoder(image_size=hw, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=n, token_dim=d,
                              head="conv" if conv else "linear", token_fill="mask", linear_path=conv)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec, NestedDropout(n))


@pytest.mark.parametrize("decoder", ["linear", "conv", "flow"])
def test_a_non_square_tokenizer_encodes_decodes_trains_and_exports(decoder, tmp_path):
    tok = _non_square(decoder)
    assert tok.input_spec.size == (16, 32)
    x = torch.rand(2, 3, 16, 32) * 2 - 1
    out = tok.train()(x)
    assert "flow" in out.losses if decoder == "flow" else out.recon.shape == x.shape
    tok.eval()
    ids = tok.encode(x)
    assert ids.shape == (2, 6) and tok.decode(ids[:, :3]).shape == (2, 3, 16, 32)
    with pytest.raises(ValueError, match="square image models only"):
        tok.image_size  # noqa: B018
    tok.save_pretrained(tmp_path / "export")
    spec = json.loads((tmp_path / "export" / "tokens.json").read_text())
    assert spec["input"] == {"channels": 3, "height": 16, "width": 32, "frames": "1"} and "image_size" not in spec
    assert "3 x 16 x 32 images" in (tmp_path / "export" / "README.md").read_text()
    again = Tokenizer.from_pretrained(tmp_path / "export")
    assert again.input_spec == tok.input_spec and torch.equal(again.encode(x), ids)


def test_tokens_json_has_the_input_block_and_keeps_image_size_for_square_models(tmp_path):
    tok = build_tokenizer("titok-tiny")
    spec = json.loads((tok.save_pretrained(tmp_path / "e") / "tokens.json").read_text())
    assert spec["input"] == {"channels": 3, "height": 32, "width": 32, "frames": "1"} and spec["image_size"] == 32
    assert input_spec(spec) == tok.input_spec
    assert input_spec({"image_size": 64}) == InputSpec(3, 64, 64), "an old tokens.json has only image_size"


# --- one source of truth ------------------------------------------------------------------------------------------
def _parts(n=8, d=4, size=32, **dec):
    enc = TiTokEncoder(image_size=size, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=n, token_dim=d)
    args = dict(image_size=32, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=8, token_dim=4)
    return enc, FSQQuantizer([8, 5, 5, 5][:d] if d <= 4 else [8] * d), ViTPixelDecoder(**{**args, **dec})


@pytest.mark.parametrize(("parts", "dropout", "message"), [
    (dict(n=16), None, r"decoder.num_tokens \(8\) must equal encoder.num_tokens \(16\)"),
    (dict(d=3), None, r"decoder.token_dim \(4\) must equal encoder.token_dim \(3\)"),
    (dict(), TailDrop(16), r"token_dropout.num_tokens \(16\) must equal encoder.num_tokens \(8\)"),
    (dict(), NestedDropout(4), r"token_dropout.num_tokens \(4\) must equal encoder.num_tokens \(8\)"),
    (dict(size=64), None, r"decoder's output \(B, 3, 32, 32\) .* must equal the encoder's input \(B, 3, 64, 64\)"),
    (dict(out_channels=1), None, r"decoder's output \(B, 1, 32, 32\) .* encoder's input \(B, 3, 32, 32\)"),
])
def test_parts_that_disagree_fail_at_construction_naming_both_sides(parts, dropout, message):
    dec_args = {k: parts.pop(k) for k in ("out_channels",) if k in parts}
    enc, quant, dec = _parts(**parts, **dec_args)
    with pytest.raises(ValueError, match=message):
        Tokenizer(enc, quant, dec, dropout)


def test_encoder_token_dim_must_match_the_quantizer():
    enc, _, dec = _parts()
    with pytest.raises(ValueError, match=r"encoder.token_dim \(4\) must equal quantizer.dim \(3\)"):
        Tokenizer(enc, FSQQuantizer([8, 5, 5]), dec)


# --- the flow decoder: network, objective, sampler ----------------------------------------------------------------
FLOW = dict(image_size=16, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=4, token_dim=4, qk_norm=False)
FLAT = dict(cond_drop_prob=0.2, logit_mean=0.5, logit_std=1.0, sampler_shift=1.0, sample_steps=3)


def test_flow_decoder_from_objects_equals_one_from_the_old_flat_arguments():
    torch.manual_seed(0)
    new = FlowDecoder(**FLOW, objective=RectifiedFlow(cond_drop_prob=0.2, logit_mean=0.5),
                      sampler=EulerSampler(shift=1.0, steps=3))
    torch.manual_seed(0)
    old = from_config({"class_path": "vistok.decoders.flow.FlowDecoder", "init_args": {**FLOW, **FLAT}})
    assert to_config(old) == to_config(new) and new.default_steps == 3
    for a, b in zip(new.state_dict().values(), old.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.nn.init.normal_(new.out_proj.weight, std=0.05)
    codes, x = torch.randn(2, 4, 4), torch.rand(2, 3, 16, 16) * 2 - 1
    new.generator = torch.Generator().manual_seed(1)
    loss = new.training_loss(codes, None, x)[0]
    new.generator = torch.Generator().manual_seed(1)
    assert torch.equal(loss, new.training_loss(codes, None, x)[0])
    assert new.reconstruct(codes).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        EulerSampler(steps=0)


@pytest.mark.parametrize("name", ["rf", "vit"])
def test_an_export_written_before_the_spec_loads_and_decodes_as_it_did(name, tmp_path):
    """tests/fixtures/old_exports: written by the previous vistok (flat FlowDecoder arguments, weights named
    token_proj / token_pos / mask_token / dropped_token, a tokens.json with only image_size); `expected` holds
    what that vistok computed."""
    path = shutil.copytree(OLD / name, tmp_path / name)
    assert "input" not in json.loads((path / "tokens.json").read_text())
    want = load_file(str(path / "expected.safetensors"))
    tok = Tokenizer.from_pretrained(path)
    assert tok.input_spec == InputSpec(3, 16, 16) == input_spec(json.loads((path / "tokens.json").read_text()))
    assert torch.equal(tok.encode(want["x"]), want["ids"])
    sampling = dict(steps=3, guidance_scale=2.0, seed=1) if name == "rf" else {}
    torch.testing.assert_close(tok.decode(want["ids"][:, :2], **sampling), want["recon"], atol=1e-5, rtol=1e-5)
    if name == "rf":
        assert isinstance(tok.decoder.objective, RectifiedFlow) and tok.decoder.objective.cond_drop_prob == 0.2
        assert tok.decoder.sampler.steps == 3
        torch.testing.assert_close(tok.decode(want["ids"]), want["recon_default_steps"], atol=1e-5, rtol=1e-5)
        tok.decoder.generator = torch.Generator().manual_seed(5)
        codes = tok.quantizer.indices_to_codes(want["ids"]).float()
        torch.testing.assert_close(tok.decoder.training_loss(codes, None, want["x"])[0].reshape(1), want["loss"])
    again = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "resaved"))
    assert torch.equal(again.encode(want["x"]), want["ids"])
    config = json.loads((tmp_path / "resaved" / "config.json").read_text())["model"]["init_args"]["decoder"]
    assert "cond_drop_prob" not in config["init_args"], "a re-export writes the current arguments"


def test_loading_and_saving_import_no_model_code():
    import subprocess

    code = ("import sys, vistok.loading, vistok.saving, vistok.token_spec, vistok.jsonfile; "
            "assert not any(m.startswith(('vistok.tokenizers', 'vistok.decoders')) for m in sys.modules), "
            "sorted(m for m in sys.modules if m.startswith('vistok'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
