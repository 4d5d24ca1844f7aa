import json

import pytest
import torch

from tests.conftest import SEED, photo_batch
from vistok import Tokenizer
from vistok.tokenizers import VARIANTS, build_tokenizer
from vistok.trainers.losses import reconstruction_loss


def _input_for(tok: Tokenizer, batch: int) -> torch.Tensor:
    spec = tok.input_spec
    if spec.is_video:  # the shortest clip with more than one frame (a video model's temporal layers all run)
        frames = [t for t in spec.frame_counts(20) if t > 1][0]
        return torch.rand(batch, 3, frames, spec.height, spec.width) * 2 - 1
    return torch.rand(batch, 3, tok.image_size, tok.image_size) * 2 - 1


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_runs_forward_backward_and_every_parameter_gets_a_gradient(name):
    # The big variants run at 64 px (same layers, a 4x4 patch grid) to keep the suite fast on a CPU.
    big = ("flextok-d12", "omnitokenizer")
    # The released TiTok / One-D-Piece architectures: 64 px and one block each side (every kind of layer runs).
    official = ("titok-s-128", "titok-b-64", "titok-l-32", "titok-bl-128-vq8k", "tatitok-bl-128-vq", "onedpiece-s-256")
    if name in ("flextok-d12-d12", "flextok-d18-d18", "flextok-d18-d28"):  # the widths, one layer each side
        tok = build_tokenizer(name, image_size=64, num_tokens=16, encoder_depth=1, decoder_depth=1)
        tok.token_dropout.distribution = "uniform"  # FlexTok's uniform_pow2 keeps all 16 tokens half the time
    elif name in official:
        tok = build_tokenizer(name, image_size=64, encoder_depth=1, decoder_depth=1)
        if tok.decoder.text_proj is not None:  # TA-TiTok: a text embedding (the default is zeros: no gradient)
            tok.decoder.default_text.normal_()
    else:
        tok = build_tokenizer(name, image_size=64) if name in big else build_tokenizer(name)
    if name == "larp":  # LARP's widths and depth at 32 px and 64 tokens
        tok = build_tokenizer(name, image_size=32, num_tokens=64)
    tok.train()
    x = _input_for(tok, 4 if tok.input_spec.height <= 64 else 1)
    if tok.token_dropout is not None:
        tok.token_dropout.full_prob = 0.0
        torch.manual_seed(3)  # a draw with some K < N, so the dropped-token embedding is used
    generative = tok.decoder.generative
    if generative or tok.encoder.linear_path is not None:
        # adaLN-zero gates, DiT's zero final layer and the zero last layers beside a linear path block every
        # gradient upstream at step 0: give the zero-initialised weights small values so that the check sees
        # every path.
        for p in tok.parameters():
            if p.ndim > 1 and not p.abs().sum():
                torch.nn.init.normal_(p, std=0.02)
    if generative:  # drop the condition often enough that the null condition is used in this batch
        tok.decoder.objective.cond_drop_prob = 0.5
    out = tok(x)
    if generative:
        loss = out.losses["flow"] + out.quant.loss
    else:
        assert out.recon.shape == x.shape
        loss = reconstruction_loss(out.recon, x) + out.quant.loss
    if "prior" in out.losses:
        loss = loss + out.losses["prior"]
    loss.backward()
    missing = [n for n, p in tok.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"parameters without gradient: {missing[:10]}"


@pytest.mark.parametrize("dropout", [None, "nested", "tail"])
def test_every_prefix_length_decodes(dropout):
    tok = build_tokenizer("titok-tiny", dropout=dropout).eval()
    x = photo_batch(3)
    ids = tok.encode(x)
    assert ids.dtype == torch.int64 and ids.shape == (3, tok.max_tokens)
    for k in range(1, tok.max_tokens + 1):
        y = tok.decode(ids[:, :k])
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert y.min() >= -1 and y.max() <= 1
        assert torch.equal(tok.encode(x, num_tokens=k), ids[:, :k])


@pytest.mark.parametrize("dropout", [None, "nested"])
def test_list_of_lengths_decodes_in_one_batch_like_one_by_one(dropout):
    tok = build_tokenizer("titok-tiny", dropout=dropout).eval()
    ids = tok.encode(photo_batch(3))
    seqs = [ids[0, :2], ids[1], ids[2, :5]]
    batched = tok.decode(seqs)
    for i, s in enumerate(seqs):
        torch.testing.assert_close(batched[i : i + 1], tok.decode(s[None]), atol=1e-5, rtol=1e-5)


def test_bad_lengths_ids_and_images_are_refused():
    tok = build_tokenizer("titok-tiny").eval()
    n, v = tok.max_tokens, tok.codebook_size
    with pytest.raises(ValueError, match=f"1..{n}"):
        tok.decode(torch.zeros(1, n + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=f"1..{n}"):
        tok.decode(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=f"1..{n}"):
        tok.encode(photo_batch(1), num_tokens=n + 1)
    with pytest.raises(ValueError, match=str(v - 1)):
        tok.decode(torch.full((1, 2), v, dtype=torch.long))
    with pytest.raises(ValueError, match=str(v - 1)):
        tok.decode([torch.tensor([0, 1]), torch.tensor([-1])])
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        tok.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tok.encode(torch.full((1, 3, 32, 32), 255.0))
    with pytest.raises(ValueError, match="float"):
        tok.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(SEED)
    tok = build_tokenizer("titok-tiny", num_tokens=16).train()
    x = photo_batch(8, split="train", seed=SEED + 1)
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        out = tok(x)
        loss = reconstruction_loss(out.recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, (losses[0], losses[-10:])


@pytest.mark.parametrize("name", ["titok-tiny", "titok-demo"])
def test_export_reloads_to_identical_tokens_and_images(tmp_path, name):
    tok = build_tokenizer(name)
    tok.train()
    tok(_input_for(tok, 4))  # move BatchNorm statistics away from their defaults
    tok.eval()
    x = photo_batch(4)
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    assert torch.equal(tok.encode(x), again.encode(x))
    assert torch.equal(tok.decode(tok.encode(x)), again.decode(again.encode(x)))
    spec = json.loads((tmp_path / "tokens.json").read_text())
    assert spec["codebook_size"] == tok.codebook_size and spec["max_tokens"] == tok.max_tokens
    assert min(spec["special_tokens"].values()) == tok.codebook_size


def test_export_refuses_unknown_classes(tmp_path):
    build_tokenizer("titok-tiny").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["init_args"]["encoder"]["class_path"] = "os.system"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'os.system' is not an allowed vistok class"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a vistok export directory"):
        Tokenizer.from_pretrained(tmp_path / "nowhere")


def test_encode_converts_safe_float_inputs_and_refuses_the_rest_with_value_errors():
    """Issue 11, item 10: one input check; float64/16/bf16 and numpy floats are converted, the rest refused."""
    tok = build_tokenizer("titok-tiny").eval()
    x = photo_batch(2)
    ids = tok.encode(x)
    for other in (x.double(), x.half(), x.bfloat16(), x.numpy(), x.double().numpy()):
        got = tok.encode(other)
        assert got.shape == ids.shape and got.dtype == torch.int64
    assert torch.equal(tok.encode(x.double()), ids) and torch.equal(tok.encode(x.numpy()), ids)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    inf = x.clone()
    inf[1, 2, 3, 4] = float("inf")
    for bad, match in ((nan, "NaN or infinite"), (inf, "NaN or infinite"), (nan.numpy(), "NaN or infinite"),
                       (torch.zeros(2, 3, 32, 32, dtype=torch.int32), "int32"),
                       ((x.numpy() * 127.5 + 127.5).astype("uint8"), "uint8"),
                       (torch.zeros(3, 32, 32), r"\(B, 3, 32, 32\)"), (x[:, :1], r"\(B, 3, 32, 32\)"),
                       (x.tolist(), "list")):
        with pytest.raises(ValueError, match=match):
            tok.encode(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tok.encode_adaptive(nan, target_psnr=20.0)
    assert len(tok.encode_adaptive(x.numpy(), target_psnr=10.0)) == 2
    with pytest.raises(ValueError, match="empty batch"):
        tok.encode_adaptive(x[:0], target_psnr=20.0)
    with pytest.raises(ValueError, match="target_psnr"):
        tok.encode_adaptive(x, target_psnr=float("nan"))


def test_decode_sampler_arguments_are_checked_and_named():
    """Issue 11, item 7: steps positive int, guidance_scale finite, seed int."""
    tok = build_tokenizer("titok-tiny").eval()
    ids = tok.encode(photo_batch(1))
    for kwargs, name in (({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": True}, "steps"),
                         ({"guidance_scale": float("nan")}, "guidance_scale"),
                         ({"guidance_scale": float("inf")}, "guidance_scale"), ({"guidance_scale": "2"}, "guidance"),
                         ({"seed": 1.5}, "seed"), ({"seed": "0"}, "seed")):
        with pytest.raises(ValueError, match=name):
            tok.decode(ids, **kwargs)
    tok.decode(ids, steps=2, guidance_scale=1.5, seed=3)


def test_save_pretrained_is_atomic_and_refuses_a_non_empty_target_unless_overwrite(tmp_path):
    """Issue 11, item 3."""
    a, b = build_tokenizer("titok-tiny"), build_tokenizer("titok-tiny", num_tokens=4)
    out = a.save_pretrained(tmp_path / "export")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        b.save_pretrained(out)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # untouched
    b.save_pretrained(out, overwrite=True)
    assert Tokenizer.from_pretrained(out).max_tokens == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "no temporary or old directory left"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a vistok export directory"):
        a.save_pretrained(other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"

    class Boom(RuntimeError):
        pass

    def fail(*args, **kwargs):
        raise Boom("disk full")

    import vistok.saving

    original = vistok.saving.save_file
    vistok.saving.save_file = fail
    try:
        with pytest.raises(Boom):
            a.save_pretrained(out, overwrite=True)
    finally:
        vistok.saving.save_file = original
    assert Tokenizer.from_pretrained(out).max_tokens == 4, "a failed export leaves the old one in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "notes"]


def test_from_pretrained_refuses_wrong_dtypes_shapes_non_finite_and_mistyped_config(tmp_path):
    """Issue 11, items 7 and 12: each error names the tensor or the config value."""
    from safetensors.torch import load_file, save_file

    out = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "export")
    weights = out / "model.safetensors"
    good = load_file(str(weights))
    name = "encoder.proj.weight"
    for change, match in (
        (lambda s: s.__setitem__(name, s[name].to(torch.int32)), "int32"),
        (lambda s: s[name].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda s: s.__setitem__(name, s[name][:1]), "shape"),
    ):
        state = {k: v.clone() for k, v in good.items()}
        change(state)
        save_file(state, str(weights))
        with pytest.raises(ValueError, match=f"{name}.*{match}|{match}.*{name}"):
            Tokenizer.from_pretrained(out)
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in good.items()}, str(weights))
    assert Tokenizer.from_pretrained(out).encoder.proj.weight.dtype == torch.float32  # fp16 weights are cast
    weights.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        Tokenizer.from_pretrained(out)
    save_file(good, str(weights))
    config = json.loads((out / "config.json").read_text())
    config["model"]["init_args"]["encoder"]["init_args"]["width"] = "wide"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="encoder.init_args.width: expected int, got 'wide'"):
        Tokenizer.from_pretrained(out)


def test_loading_an_export_directory_as_a_checkpoint_says_so(tmp_path):
    from vistok.loading import load_checkpoint

    out = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "export")
    with pytest.raises(ValueError, match="already an export directory"):
        load_checkpoint(out)
