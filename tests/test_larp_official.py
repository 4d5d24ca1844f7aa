"""LARP as its authors built it: the official network (`LARPEncoder(architecture="official")`), its stochastic
VQ, its AR prior, and the importer of its released tokenizers, checked against fixtures written by the official
code (scripts/make_larp_fixtures.py: random weights at a tiny size, saved as the released tokenizers are)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vistok import Tokenizer
from vistok.decoders.larp import LARPDecoder
from vistok.importers.larp import build_tokenizer, import_checkpoint
from vistok.importers.lightning_ckpt import ImportRefused
from vistok.nn.prior import LARPPrior
from vistok.quantizers.stochastic_vq import StochasticVQQuantizer
from vistok.tokenizers.ar_prior import larp_prior_loss
from vistok.tokenizers.larp import LARPEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "larp"


def _io() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / "io.pt", weights_only=True)


def test_imported_fixture_reproduces_the_official_forward_pass(tmp_path):
    out = import_checkpoint(str(FIXTURES / "tokenizer"), str(tmp_path / "export"))
    tok = Tokenizer.from_pretrained(out)
    io = _io()
    with torch.no_grad():
        latents = tok.encoder(io["video"])  # the bottleneck's in_linear output (B, N, d)
        ids = tok.encode(io["video"])
        raw = tok.decoder(tok.quantizer.indices_to_codes(ids))
        decoded = tok.decode(ids)
        logits = tok.prior.logits(tok.prior(tok.quantizer.indices_to_codes(ids)), tok.quantizer.table())
    assert torch.equal(ids, io["ids"]), "token ids differ"
    torch.testing.assert_close(latents, io["projected_z"], atol=1e-4, rtol=0)
    torch.testing.assert_close(raw, io["decoded"], atol=1e-4, rtol=0)
    torch.testing.assert_close(decoded, io["decoded"].clamp(-1, 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, io["prior_logits"], atol=1e-4, rtol=0)
    assert tok.input_spec.frames == "8"  # T = 8: every frame in a 4-frame patch, the first one too


def test_paper_size_parameter_counts_equal_the_official_code():
    """LARP-L: 172,179,984 tokenizer parameters + 21,700,240 for the GPTC-S prior (measured from the official
    code on the meta device), from configs/larp_l.yaml."""
    from vistok.configurable import from_config
    from vistok.importers.lightning_ckpt import config_from_file

    node = config_from_file(Path(__file__).parents[1] / "configs" / "larp_l.yaml")
    with torch.device("meta"):
        tok = from_config(node)
    prior = sum(p.numel() for p in tok.prior.parameters())
    assert prior == 21_700_240
    assert sum(p.numel() for p in tok.parameters()) - prior == 172_179_984


def test_stochastic_vq_samples_in_training_and_is_deterministic_when_switched():
    torch.manual_seed(0)
    q = StochasticVQQuantizer(dim=4, codebook_size=64, temperature=0.5)
    z = torch.randn(2, 32, 4)
    q.train()
    a, b = q(z).indices, q(z).indices
    assert not torch.equal(a, b), "training samples the code"
    q.eval()
    c, d = q(z).indices, q(z).indices
    assert torch.equal(c, d)
    cos = torch.nn.functional.normalize(z, dim=-1) @ q.table().t()
    assert torch.equal(c, cos.argmax(-1)), "deterministic: the most similar code"
    q.deterministic_eval = False  # the official default: eval samples too
    assert not torch.equal(q(z).indices, q(z).indices)
    out = q(z)
    assert out.loss > 0 and torch.allclose(out.codes.norm(dim=-1), torch.ones(2, 32))


def _tiny(prior: bool = True) -> Tokenizer:
    kw = dict(image_size=16, num_frames=8, patch_size=4, temporal_patch=4, width=32, depth=1, num_heads=2,
              num_tokens=8, token_dim=4, architecture="official")
    p = LARPPrior(token_dim=4, max_tokens=8, width=16, depth=1, num_heads=2, dropout=0.0) if prior else None
    return Tokenizer(LARPEncoder(**kw), StochasticVQQuantizer(dim=4, codebook_size=32), LARPDecoder(**kw),
                     prior=p)


def test_prior_loss_reaches_the_encoder_and_scheduled_sampling_follows_progress():
    torch.manual_seed(0)
    tok = _tiny().train()
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    out = tok(x)
    out.losses["prior"].backward()
    assert tok.encoder.queries.grad is not None and tok.encoder.queries.grad.abs().sum() > 0
    assert tok.quantizer.embedding.grad is None, "the prior reads the codebook without gradient"
    prior = tok.prior
    assert prior.sampling_ratio(0.0) == 0.0
    assert prior.sampling_ratio(0.15) == pytest.approx(0.25)
    assert prior.sampling_ratio(0.9) == 0.5
    # rounds: with no sampling the second round reads the same inputs, so the loss equals one round's
    codes, ids = out.quant.codes.detach(), out.quant.indices
    prior.progress = 0.0
    two = larp_prior_loss(prior, codes, ids, tok.quantizer.table())
    logits = prior.logits(prior(codes), tok.quantizer.table())
    one = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(two, one)
    prior.progress = 1.0
    torch.manual_seed(1)
    assert not torch.allclose(larp_prior_loss(prior, codes, ids, tok.quantizer.table()), one)


def test_official_network_trains_every_parameter():
    torch.manual_seed(0)
    tok = _tiny().train()
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    out = tok(x)
    loss = (out.recon - x).abs().mean() + 0.1 * out.losses["quantizer"] + 0.06 * out.losses["prior"]
    loss.backward()
    missing = [n for n, p in tok.named_parameters() if p.grad is None]
    assert not missing
    assert {n for n, _ in tok.named_buffers()} >= {"encoder.patch_pos", "decoder.patch_pos", "decoder.latent_pos"}


def test_official_decoder_takes_all_tokens_only():
    tok = _tiny(prior=False).eval()
    with pytest.raises(ValueError, match="all 8 tokens"):
        tok.decoder(torch.zeros(1, 4, 4))


def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    src = FIXTURES / "tokenizer"
    truncated = tmp_path / "truncated"
    shutil.copytree(src, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    shutil.copy(src / "model.safetensors", no_config)
    kl = tmp_path / "kl"
    shutil.copytree(src, kl)
    cfg = json.loads((src / "config.json").read_text())
    cfg["bottleneck"]["args"]["regularizer"]["name"] = "skl"
    (kl / "config.json").write_text(json.dumps(cfg))
    wrong = tmp_path / "wrong"
    shutil.copytree(src, wrong)
    cfg = json.loads((src / "config.json").read_text())
    cfg["encoder_hidden_size"] = cfg["decoder_hidden_size"] = 64
    (wrong / "config.json").write_text(json.dumps(cfg))
    omni = Path(__file__).parent / "fixtures" / "omni" / "rope.ckpt"
    cases = [(truncated, "truncated"), (no_config, "config.json"), (kl, "only LARP's VQ"), (wrong, "shape"),
             (omni, "not a LARP"), (tmp_path / "missing", "no such")]
    for path, words in cases:
        with pytest.raises(ImportRefused, match=words):
            import_checkpoint(str(path), str(out))
        assert not out.exists(), f"{path.name}: something was written"


def test_training_checkpoint_layout_imports_too(tmp_path):
    """LARP's trainer saves {'model': {'name', 'args', 'sd'}, ...}: the same weights, the same model."""
    from safetensors.torch import load_file

    args = json.loads((FIXTURES / "tokenizer" / "config.json").read_text())
    sd = load_file(str(FIXTURES / "tokenizer" / "model.safetensors"))
    path = tmp_path / "epoch-last.pth"
    torch.save({"model": {"name": "larp_tokenizer", "args": args, "sd": sd}}, path)
    tok = build_tokenizer(path)
    with torch.no_grad():
        ids = tok.encode(_io()["video"])
    assert torch.equal(ids, _io()["ids"])


@pytest.mark.parametrize("name, count", [("larp", 172_179_984 + 21_700_240), ("omnitokenizer", 53_708_440)])
def test_registered_variants_build_the_official_networks(name, count):
    from vistok.tokenizers.registry import build_tokenizer as build_variant

    with torch.device("meta"):
        tok = build_variant(name, architecture="official")
    assert sum(p.numel() for p in tok.parameters()) == count
