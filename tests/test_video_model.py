"""Video tokenizers (OmniTokenizer-style grid, LARP-style 1D): causality, chunking, shapes, export, training."""

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata
from torch.utils.data import DataLoader

from tests.conftest import SEED
from vistok import Tokenizer
from vistok.tokenizers import build_tokenizer
from vistok.tokenizers.chunked import decode_chunked, encode_chunked
from vistok.trainers.init_from import load_matching_weights
from vistok.trainers.losses import reconstruction_loss
from vistok.trainers.system import TokenizerSystem


def pan_clip(frames: int = 9, size: int = 32, step: int = 3, photo: str = "astronaut", batch: int = 1,
             ) -> torch.Tensor:
    """A real clip: a window of `size` px panning right and down over a bundled photo (resized to 224 px),
    (batch, 3, frames, size, size) in [-1, 1]; each clip of the batch starts at another place."""
    img = torch.from_numpy(np.ascontiguousarray(getattr(skdata, photo)())).permute(2, 0, 1).float() / 127.5 - 1
    img = F.interpolate(img[None], size=(224, 224), mode="area")[0]  # (3, 224, 224)
    clips = []
    for b in range(batch):
        y0, x0 = 8 + 20 * b, 4 + 24 * b
        clips.append(torch.stack([img[:, y0 + step * t // 2: y0 + step * t // 2 + size, x0 + step * t: x0 + step * t
                                      + size] for t in range(frames)], dim=1))
    return torch.stack(clips)


@pytest.fixture(scope="module")
def omni():
    torch.manual_seed(0)
    tok = build_tokenizer("omni-tiny").eval()
    for _ in range(3):  # FSQ's input norm: running statistics of real clips, so codes spread over the levels
        tok.quantizer.train()
        tok.quantizer(tok.encoder(pan_clip(17, batch=4)))
    return tok.eval()


def test_an_image_and_the_same_image_as_a_one_frame_video_give_the_same_tokens(omni):
    clip = pan_clip(17, batch=2)
    image = clip[:, :, 0]  # (B, 3, H, W)
    ids_image, ids_video = omni.encode(image), omni.encode(clip[:, :, :1])
    assert ids_image.shape == (2, 16) and torch.equal(ids_image, ids_video)
    assert torch.equal(ids_image, omni.encode(clip)[:, :16]), "a clip's first h*w ids are its first frame's"
    assert omni.decode(ids_image).shape == (2, 3, 1, 32, 32)
    out = omni(image)  # training path: an image batch through a video model comes back as images
    assert out.recon.shape == image.shape


def test_changing_later_frames_leaves_the_earlier_tokens_unchanged(omni):
    clip = pan_clip(17, batch=2)
    ids = omni.encode(clip)  # (2, 5 * 16)
    changed = clip.clone()
    changed[:, :, 5:] = torch.rand_like(changed[:, :, 5:]) * 2 - 1  # frames after the first temporal patch
    ids2 = omni.encode(changed)
    assert torch.equal(ids[:, :32], ids2[:, :32]), "latent frames 0 and 1 (frames 0..4) must not change"
    assert not torch.equal(ids[:, 32:], ids2[:, 32:])
    z, z2 = omni.encoder(clip), omni.encoder(changed)
    assert torch.equal(z[:, :32], z2[:, :32])
    # the decoder is causal too: pixels of the first latent frames depend only on their tokens
    rec, rec2 = omni.decode(ids), omni.decode(ids2)
    assert torch.allclose(rec[:, :, :5], rec2[:, :, :5], atol=1e-6)
    assert torch.equal(omni.encode(clip, num_tokens=32), ids[:, :32]), "a prefix of whole latent frames"


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_chunked_encoding_and_decoding_equal_the_whole_clip(omni, chunk):
    clip = pan_clip(33, step=2, batch=2)  # 9 latent frames; the temporal window is 3, so chunks need context
    whole = omni.encode(clip)
    assert whole.shape == (2, 9 * 16)
    assert torch.equal(omni.encode(clip, chunk=chunk), whole)
    with torch.no_grad():
        z, zc = omni.encoder(clip), encode_chunked(omni.encoder, clip, chunk)
        assert torch.allclose(z, zc, atol=1e-5)
        codes = omni.quantizer.indices_to_codes(whole)
        assert torch.allclose(omni.decoder(codes), decode_chunked(omni.decoder, codes, chunk), atol=1e-5)
    assert torch.allclose(omni.decode(whole), omni.decode(whole, chunk=chunk), atol=1e-5)


def test_grid_tokenizer_shapes_and_errors(omni):
    assert omni.input_spec.frames == "1+4k" and omni.token_grid(17) == (5, 4, 4) and omni.frame_tokens == 16
    clip = pan_clip(9)
    ids = omni.encode(clip)
    assert ids.dtype == torch.int64 and ids.shape == (1, 48)
    assert omni.decode(ids).shape == clip.shape
    assert omni.decode(ids[:, :16]).shape == (1, 3, 1, 32, 32)
    with pytest.raises(ValueError, match="whole latent frames: a multiple of 16"):
        omni.decode(ids[:, :20])
    with pytest.raises(ValueError, match="whole latent frames"):
        omni.encode(clip, num_tokens=64)  # more than the clip has
    with pytest.raises(ValueError, match=r"T = 1\+4k"):
        omni.encode(pan_clip(8))
    with pytest.raises(ValueError, match="chunk must be a positive"):
        omni.encode(clip, chunk=0)


def test_larp_tokens_are_1d_and_every_prefix_decodes():
    torch.manual_seed(SEED)
    tok = build_tokenizer("larp-tiny", num_tokens=8).eval()
    clip = pan_clip(5, batch=2)
    ids = tok.encode(clip)
    assert ids.shape == (2, 8) and tok.token_grid() == (8,)
    for k in range(1, 9):
        y = tok.decode(ids[:, :k])
        assert y.shape == clip.shape and torch.isfinite(y).all()
        assert torch.equal(tok.encode(clip, num_tokens=k), ids[:, :k])
    assert tok.decode([ids[0, :3], ids[1]]).shape == clip.shape
    with pytest.raises(ValueError, match="T = 5"):
        tok.encode(pan_clip(9))


def test_the_ar_prior_loss_reaches_the_encoder():
    torch.manual_seed(SEED)
    tok = build_tokenizer("larp-tiny", prior=True).train()
    out = tok(pan_clip(5, batch=2))
    prior = out.losses["prior"]
    assert prior.ndim == 0
    assert abs(float(prior.detach()) - np.log(tok.codebook_size)) < 2.0  # near uniform at the start
    prior.backward()
    assert tok.encoder.proj.weight.grad.abs().sum() > 0, "the prior shapes the tokens (straight-through codes)"
    assert tok.prior.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["omni-tiny", "larp-tiny"])
def test_export_reloads_to_identical_tokens_with_the_grid_in_tokens_json(name, tmp_path, omni):
    tok = omni if name == "omni-tiny" else build_tokenizer(name, prior=True).eval()
    clip = pan_clip(9 if name == "omni-tiny" else 5, batch=2)
    tok.save_pretrained(tmp_path / "export")
    again = Tokenizer.from_pretrained(tmp_path / "export")
    assert torch.equal(again.encode(clip), tok.encode(clip))
    spec = json.loads((tmp_path / "export" / "tokens.json").read_text())
    if name == "omni-tiny":
        assert spec["token_grid"] == [3, 4, 4] and spec["token_grid_frames"] == 9 and spec["order"] == "time-major"
        assert spec["input"]["frames"] == "1+4k"
    else:
        assert spec["token_grid"] == [16] and spec["order"] == "coarse-to-fine" and spec["input"]["frames"] == "5"


def test_a_small_model_overfits_a_real_clip():
    torch.manual_seed(SEED)
    tok = build_tokenizer("omni-tiny").train()
    clip = pan_clip(9, batch=2)
    opt = torch.optim.AdamW(tok.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(150):
        out = tok(clip)
        loss = reconstruction_loss(out.recon, clip)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    first, last = losses[0], min(losses[-10:])
    print(f"overfit: loss {first:.4f} -> {last:.4f}")
    assert last < first / 10, f"loss {first:.4f} -> {last:.4f}"


def _fit(system: TokenizerSystem, batch: dict, steps: int = 2) -> pl.Trainer:
    loader = DataLoader([batch] * steps, batch_size=None)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(system, loader)
    return trainer


def test_the_training_system_takes_video_batches_and_the_prior_loss():
    torch.manual_seed(SEED)
    tok = build_tokenizer("larp-tiny", prior=True)
    trainer = _fit(TokenizerSystem(tok, lr=1e-3), {"video": pan_clip(5, batch=2)})
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    assert "train/prior" in metrics and "train/psnr" in metrics
    with pytest.raises(ValueError, match="'image' or a 'video' key"):
        from vistok.trainers.system import pixels

        pixels({"frames": 1})


def test_init_from_loads_matching_weights_reports_the_rest_and_refuses_shape_mismatches(tmp_path, capsys):
    torch.manual_seed(SEED)
    stage1 = build_tokenizer("larp-tiny", prior=True)
    stage1.save_pretrained(tmp_path / "stage1")
    fresh = build_tokenizer("larp-tiny", prior=False)
    missing, unexpected = load_matching_weights(fresh, tmp_path / "stage1")
    assert missing == [] and unexpected and all(k.startswith("prior.") for k in unexpected)
    assert torch.equal(fresh.encoder.proj.weight, stage1.encoder.proj.weight)
    # through the system, from a fit checkpoint too
    system = TokenizerSystem(build_tokenizer("larp-tiny", prior=True), init_from=str(tmp_path / "stage1"))
    assert torch.equal(system.tokenizer.decoder.head.first.weight, stage1.decoder.head.first.weight)
    trainer = _fit(system, {"video": pan_clip(5, batch=2)}, steps=1)
    trainer.save_checkpoint(tmp_path / "stage1.ckpt")
    again = TokenizerSystem(build_tokenizer("larp-tiny", prior=True), init_from=str(tmp_path / "stage1.ckpt"))
    assert torch.equal(again.tokenizer.encoder.queries, system.tokenizer.encoder.queries)
    with pytest.raises(ValueError, match=r"tensor '(encoder|decoder)\.[a-z_.]+' has shape \(1, 16, 64\)"):
        load_matching_weights(build_tokenizer("larp-tiny", num_tokens=8), tmp_path / "stage1")
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_matching_weights(fresh, tmp_path / "nope")
