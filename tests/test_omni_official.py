"""OmniTokenizer as its authors built it: the official network (`OmniEncoder(architecture="official")`), its EMA
codebook, and the importer of its released checkpoints, checked against fixtures written by the official code
(scripts/make_omni_fixtures.py: random weights at a tiny size, in the released checkpoint layout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from vistok import Tokenizer
from vistok.decoders.omni import OmniDecoder
from vistok.importers.lightning_ckpt import ImportRefused
from vistok.importers.omnitokenizer import build_tokenizer, config_from_args, import_checkpoint
from vistok.quantizers.ema_codebook import EMACodebookQuantizer
from vistok.tokenizers.omni import OmniEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "omni"


def _io(case: str) -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / f"{case}_io.pt", weights_only=True)


def _eager_config(tmp_path: Path) -> Path:
    """A config of the rel_eager fixture: its own arguments, with the non-SDPA path's position bias on."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(FIXTURES / "rel_eager.ckpt", weights_only=True)
    node = config_from_args(vars(ckpt["hyper_parameters"]["args"]), "fixture")
    for part in ("encoder", "decoder"):
        node["init_args"][part]["init_args"]["position_bias"] = True
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": node}))
    return path


@pytest.mark.parametrize("case", ["rope", "rel", "rel_eager"])
def test_imported_fixture_reproduces_the_official_forward_pass(case, tmp_path):
    config = _eager_config(tmp_path) if case == "rel_eager" else None
    out = import_checkpoint(str(FIXTURES / f"{case}.ckpt"), str(tmp_path / "export"), config=config)
    tok = Tokenizer.from_pretrained(out)
    io = _io(case)
    for kind in ("video", "image"):
        x = io[kind]
        clip = x if x.ndim == 5 else x[:, :, None]
        with torch.no_grad():
            latents = tok.encoder(clip)  # (B, T' h w, d): the official pre_vq_conv output
            ids = tok.encode(x)
            decoded = tok.decode(ids)  # clamped to [-1, 1]
            raw = tok.decoder(tok.quantizer.indices_to_codes(ids))
        official_latents = io[f"{kind}_pre_vq"].permute(0, 2, 3, 4, 1).reshape(latents.shape)
        assert torch.equal(ids, io[f"{kind}_ids"].reshape(ids.shape)), f"{case} {kind}: token ids differ"
        torch.testing.assert_close(latents, official_latents, atol=1e-4, rtol=0)
        want = io[f"{kind}_decoded"]
        torch.testing.assert_close(raw.reshape(want.shape), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(decoded.reshape(want.shape), want.clamp(-1, 1), atol=1e-4, rtol=0)


def test_the_position_bias_of_the_non_sdpa_path_changes_the_output(tmp_path):
    """The rel_eager fixture was written by the official non-SDPA path: without the bias it does not match."""
    tok = build_tokenizer(FIXTURES / "rel_eager.ckpt")  # its own arguments: the SDPA path, bias unused
    io = _io("rel_eager")
    with torch.no_grad():
        latents = tok.encoder(io["video"])
    official = io["video_pre_vq"].permute(0, 2, 3, 4, 1).reshape(latents.shape)
    assert (latents - official).abs().max() > 1e-3


def test_official_peg_order_is_not_causal_and_the_default_is():
    torch.manual_seed(0)
    kw = dict(image_size=16, patch_size=4, temporal_patch=4, width=16, num_heads=2, head_dim=8,
              spatial_blocks=["full", "window"], window_size=2, temporal_depth=2, token_dim=4,
              architecture="official")
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    y = x.clone()
    y[:, :, -1] += 1.0  # the last frame only: latent frame 2
    for order, moves in (("causal", False), ("official", True)):
        enc = OmniEncoder(peg_order=order, **kw).eval()
        with torch.no_grad():
            first = (enc(x) - enc(y))[:, :16].abs().max()  # latent frame 0's 4 x 4 tokens
        assert (first > 1e-4) == moves, f"peg_order={order}: frame 0 moved by {first}"


def test_paper_size_parameter_count_equals_the_official_code():
    """53,708,440 parameters, as the official OmniTokenizer_Encoder + Decoder + pre/post_vq_conv at the
    released recipe's settings (measured from the official code on the meta device)."""
    kw = dict(image_size=256, patch_size=8, temporal_patch=4, width=512, num_heads=8, window_size=8,
              temporal_depth=4, token_dim=8, architecture="official", spatial_pos="rope")
    with torch.device("meta"):
        enc = OmniEncoder(spatial_blocks=["full", "full", "window", "window"], **kw)
        dec = OmniDecoder(spatial_blocks=["full"] * 4, **kw)
    assert sum(p.numel() for m in (enc, dec) for p in m.parameters()) == 53_708_440


def test_official_network_trains_every_used_parameter():
    torch.manual_seed(0)
    kw = dict(image_size=16, patch_size=4, temporal_patch=4, width=16, num_heads=2, head_dim=8, window_size=2,
              temporal_depth=1, token_dim=4, architecture="official", spatial_pos="rel", position_bias=True)
    tok = Tokenizer(OmniEncoder(spatial_blocks=["full", "window"], num_frames=5, **kw),
                    EMACodebookQuantizer(dim=4, codebook_size=16),
                    OmniDecoder(spatial_blocks=["full"], **kw)).train()
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    out = tok(x)
    (out.recon - x).abs().mean().add(out.losses["quantizer"]).backward()
    trainable = [n for n, p in tok.named_parameters() if p.requires_grad]
    missing = [n for n, p in tok.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable and not missing
    frozen = sorted({n.split(".attn.")[-1].split(".")[0] for n, p in tok.named_parameters() if not p.requires_grad})
    assert frozen == ["context_norm", "rel_bias"]  # owned by the official modules, never read


def test_ema_codebook_initialises_from_the_first_batch_then_follows_the_assigned_vectors():
    torch.manual_seed(0)
    q = EMACodebookQuantizer(dim=4, codebook_size=8).train()
    z = torch.randn(2, 16, 4)
    normed = torch.nn.functional.normalize(z, dim=-1).reshape(-1, 4)
    out = q(z)
    assert bool(q.initialized)
    counts = torch.bincount(out.indices.flatten(), minlength=8).float()
    torch.testing.assert_close(q.counts, 0.99 + 0.01 * counts)  # from 1 at initialisation
    sums = torch.zeros(8, 4).index_add_(0, out.indices.flatten(), normed)
    # the initial table is 8 of the batch's normalised vectors (32 >= 8: no tiling noise)
    initial = (q.sums - 0.01 * sums) / 0.99
    assert torch.cdist(initial, normed).min(dim=1).values.max() < 1e-5
    smoothed = (q.counts + 1e-7) / (q.counts.sum() + 8e-7) * q.counts.sum()
    torch.testing.assert_close(q.embeddings, q.sums / smoothed[:, None])
    # the decoder gets the code the id names (straight through), the loss is 0.25 * the squared distance
    assert out.loss > 0
    q.eval()
    table = q.embeddings.clone()
    again = q(z)
    assert torch.equal(q.embeddings, table), "eval leaves the codebook alone"
    torch.testing.assert_close(again.codes, q.indices_to_codes(again.indices))
    nearest = torch.cdist(normed, table).argmin(dim=1)
    assert torch.equal(again.indices.flatten(), nearest)


def _write_ckpt(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


class NotAllowed:
    pass


def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    good = FIXTURES / "rope.ckpt"
    out = tmp_path / "out"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(good, weights_only=True)
    code = _write_ckpt(tmp_path / "code.ckpt", {"state_dict": ckpt["state_dict"], "extra": NotAllowed()})
    other = _write_ckpt(tmp_path / "other.ckpt", {"state_dict": {"encoder.patch_embed.proj.weight": torch.ones(1)},
                                                  "hyper_parameters": {}})
    vae_args = argparse.Namespace(**{**vars(ckpt["hyper_parameters"]["args"]), "use_vae": True})
    vae = _write_ckpt(tmp_path / "vae.ckpt", {**ckpt, "hyper_parameters": {"args": vae_args}})
    wide = tmp_path / "wide.json"
    node = config_from_args(vars(ckpt["hyper_parameters"]["args"]), "x")
    node["init_args"]["encoder"]["init_args"]["width"] = 32
    wide.write_text(json.dumps({"model": node}))
    cases = [(truncated, None, "truncated"), (code, None, "needs code"), (other, None, "not an OmniTokenizer"),
             (vae, None, "VAE"), (good, wide, "shape"), (tmp_path / "missing.ckpt", None, "no such")]
    for path, config, words in cases:
        with pytest.raises(ImportRefused, match=words):
            import_checkpoint(str(path), str(out), config=config)
        assert not out.exists(), f"{path.name}: something was written"


@pytest.mark.parametrize("config, count", [("omnitokenizer_256.yaml", 55_318_216),
                                           ("omnitokenizer_256_joint.yaml", 53_708_440)])
def test_paper_size_configs_count_the_official_parameters(config, count):
    """Stage 1 (relative bias MLPs in the spatial blocks) and stage 2 (RoPE), as the official code counts them
    with --spatial_pos rel / rope (encoder, decoder, pre/post_vq_conv; the codebook is buffers)."""
    from vistok.configurable import from_config
    from vistok.importers.lightning_ckpt import config_from_file

    node = config_from_file(Path(__file__).parents[1] / "configs" / config)
    with torch.device("meta"):
        tok = from_config(node)
    assert sum(p.numel() for p in tok.parameters()) == count


def test_an_imported_model_is_not_chunked_and_its_prefixes_see_the_whole_clip(tmp_path):
    """The official PEG order lets later frames move earlier tokens: chunked passes are refused, and a prefix
    of the ids is the prefix of a whole encode (not the encode of the first frames)."""
    tok = build_tokenizer(FIXTURES / "rope.ckpt")
    video = _io("rope")["video"]
    whole = tok.encode(video)
    per_frame = whole.shape[1] // 3
    assert torch.equal(tok.encode(video, num_tokens=per_frame), whole[:, :per_frame])
    with pytest.raises(ValueError, match="not causal in time"):
        tok.encode(video, chunk=1)
    with pytest.raises(ValueError, match="not causal in time"):
        tok.decode(whole, chunk=1)


def test_vistok_import_command_writes_an_export_and_refuses_bad_input(tmp_path):
    """`vistok import` end to end: the fixture checkpoint becomes an export that encodes and decodes; a wrong
    family's file is one line on stderr, exit 1, nothing written."""
    import subprocess
    import sys

    from vistok import Tokenizer

    out = tmp_path / "export"
    cmd = [sys.executable, "-m", "vistok.cli", "import", "omnitokenizer", "--checkpoint", str(FIXTURES / "rope.ckpt"),
           "--output", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tok = Tokenizer.from_pretrained(out)
    x = torch.rand(1, 3, *tok.input_spec.size).mul(2).sub(1)[:, :, None].repeat(1, 1, 5, 1, 1) \
        if tok.input_spec.is_video else None
    assert tok.decode(tok.encode(x)).shape == x.shape
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run([*cmd[:6], str(bad), "--output", str(tmp_path / "never")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "error:" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "never").exists()
