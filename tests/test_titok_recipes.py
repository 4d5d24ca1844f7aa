"""TiTok's two-stage recipe as its authors train it, at toy sizes on the CPU: stage 1 (proxy-code cross-entropy
against a frozen MaskGIT-VQGAN), stage 2 (decoder fine-tuned from stage 1, encoder and quantizer frozen), their
errors, and `vistok export --format titok`."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from vistok.decoders.maskgit_vqgan import MaskGITVQGAN
from vistok.tokenizers.dropout import TailDrop
from vistok.tokenizers.variants.titok import titok_official
from vistok.trainers.proxy_codes import ProxyCodeSettings
from vistok.trainers.system import TokenizerSystem

STAGE2_FREEZE = {"encoder.": 0.0, "quantizer.": 0.0}  # what configs/*_stage2.yaml freeze


def tiny_titok(num_tokens: int = 8, tail: bool = False):
    """The faithful TiTok (class token, legacy projection, proxy head + MaskGIT-VQGAN decoder) at 32 px, one
    layer per side."""
    torch.manual_seed(0)
    return titok_official("small", "small", num_tokens=num_tokens, image_size=32, encoder_depth=1, decoder_depth=1,
                          token_dropout=TailDrop(num_tokens) if tail else None)


def tiny_maskgit(path: Path) -> Path:
    """Random MaskGIT-VQGAN weights at a toy width (stride 16, the released 1024 codes)."""
    torch.manual_seed(1)
    torch.save(MaskGITVQGAN(hidden_channels=32, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=1, z_channels=8)
               .state_dict(), path)
    return path


class _Repeat(Dataset):
    def __init__(self, images: torch.Tensor, steps: int) -> None:
        self.images, self.steps = images, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images}


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.values: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.values.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def _fit(system: TokenizerSystem, steps: int) -> _Record:
    torch.manual_seed(2)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    record = _Record()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[record],
                         num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(system, DataLoader(_Repeat(images, steps), batch_size=None))
    return record


def test_stage1_cross_entropy_falls_on_a_repeated_batch(tmp_path):
    tok = tiny_titok()
    frozen_before = tok.decoder.head.pixel_decoder.conv_out.weight.clone()
    system = TokenizerSystem(tok, lr=1e-3, warmup=0, proxy_codes=ProxyCodeSettings(
        str(tiny_maskgit(tmp_path / "maskgit.bin")), load_decoder=False))
    ce = [v["train/proxy_codes"] for v in _fit(system, 12).values]
    assert len(ce) == 12
    assert ce[0] > 6.0, ce  # about ln(1024) at the start
    assert ce[-1] < ce[0] - 1.0, ce
    # the head's conv decoder and codebook get no gradient from the cross-entropy: frozen, unchanged
    assert not tok.decoder.head.pixel_decoder.conv_out.weight.requires_grad
    assert torch.equal(tok.decoder.head.pixel_decoder.conv_out.weight, frozen_before)
    assert system.training_record()["reconstruction"]["kind"] == "proxy_codes"


def test_stage1_with_tail_drop_trains(tmp_path):
    """One-D-Piece's stage 1: the tail drop cuts the tokens the decoder sees, the target stays every patch."""
    tok = tiny_titok(tail=True)
    system = TokenizerSystem(tok, lr=1e-3, warmup=0, proxy_codes=ProxyCodeSettings(
        str(tiny_maskgit(tmp_path / "maskgit.bin")), load_decoder=False))
    ce = [v["train/proxy_codes"] for v in _fit(system, 3).values]
    assert len(ce) == 3 and all(c == c for c in ce)


def test_stage1_refuses_a_missing_or_wrong_proxy_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="proxy_codes.path is not set"):
        TokenizerSystem(tiny_titok(), proxy_codes=ProxyCodeSettings(None))
    with pytest.raises(FileNotFoundError, match=r"proxy_codes.path .*nowhere\.bin: no such file"):
        TokenizerSystem(tiny_titok(), proxy_codes=ProxyCodeSettings(str(tmp_path / "nowhere.bin")))
    bad = tmp_path / "bad.bin"
    torch.save({"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(ValueError, match=r"bad\.bin: missing key 'quantize.embedding.weight'"):
        TokenizerSystem(tiny_titok(), proxy_codes=ProxyCodeSettings(str(bad)))
    # the toy MaskGIT's conv decoder does not fit the released-size proxy head: named, tensor by tensor
    with pytest.raises(ValueError, match=r"maskgit\.bin: its codebook / decoder do not fit the proxy head .*"
                                         r"quantize.embedding.weight \(1024, 8\) -> decoder.head.codebook"):
        TokenizerSystem(tiny_titok(), proxy_codes=ProxyCodeSettings(str(tiny_maskgit(tmp_path / "maskgit.bin"))))
    with pytest.raises(ValueError, match="loss_weights.proxy_codes: needs model.proxy_codes"):
        TokenizerSystem(tiny_titok(), loss_weights={"proxy_codes": 1.0})


def _stage1_export(tmp_path: Path, num_tokens: int = 8) -> Path:
    from vistok.saving import save_pretrained

    return save_pretrained(tiny_titok(num_tokens), tmp_path / f"stage1_{num_tokens}", source="test stage 1")


def test_stage2_freezes_the_encoder_and_fine_tunes_the_decoder(tmp_path):
    from vistok.nn.discriminator import NLayerDiscriminator
    from vistok.trainers.adversarial import GANSettings

    stage1 = _stage1_export(tmp_path)
    torch.manual_seed(5)  # a different initialisation: everything the stage-2 model keeps comes from stage 1
    tok = titok_official("small", "small", num_tokens=8, image_size=32, encoder_depth=1, decoder_depth=1,
                         commitment_weight=0.0)
    system = TokenizerSystem(tok, lr=1e-3, warmup=0, betas=(0.9, 0.999), lr_scales=STAGE2_FREEZE,
                             loss_weights={"l2": 1.0, "quantizer": 0.0}, init_from=str(stage1),
                             discriminator=NLayerDiscriminator(ndf=8, n_layers=1),
                             gan=GANSettings(start_step=1, weight=0.01, adaptive=False, lecam_weight=0.001))
    from safetensors.torch import load_file

    start = load_file(str(stage1 / "model.safetensors"))
    _fit(system, 3)
    after = tok.state_dict()
    frozen = [k for k in after if k.startswith(("encoder.", "quantizer."))]
    assert frozen and all(torch.equal(after[k], start[k]) for k in frozen), "encoder / quantizer changed"
    decoder = [k for k in after if k.startswith("decoder.") and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], start[k]) for k in decoder if "transformer" in k), "decoder ViT unchanged"
    assert any(not torch.equal(after[k], start[k]) for k in decoder if "pixel_decoder" in k), "conv decoder unchanged"


def test_stage2_refuses_a_stage1_checkpoint_of_another_shape(tmp_path):
    stage1 = _stage1_export(tmp_path, num_tokens=16)
    with pytest.raises(ValueError, match=r"init_from .*stage1_16: tensor '[\w.]+' has shape "
                                         r"\(1, 16, 512\), the model expects \(1, 8, 512\)"):
        TokenizerSystem(tiny_titok(8), lr_scales=STAGE2_FREEZE, init_from=str(stage1))


def test_stage2_refuses_a_checkpoint_without_the_frozen_encoder(tmp_path):
    from safetensors.torch import load_file, save_file

    stage1 = _stage1_export(tmp_path)
    state = {k: v for k, v in load_file(str(stage1 / "model.safetensors")).items() if not k.startswith("encoder.")}
    save_file(state, str(stage1 / "model.safetensors"))
    with pytest.raises(ValueError, match=r"init_from .*stage1_8: lacks \d+ tensors that lr_scales freezes.*"
                                         r"encoder\."):
        TokenizerSystem(tiny_titok(), lr_scales=STAGE2_FREEZE, init_from=str(stage1))


def test_export_titok_format_round_trips_through_the_importer(tmp_path):
    from vistok.commands.export import main as export
    from vistok.importers.titok import load_official
    from vistok.saving import save_pretrained

    torch.manual_seed(0)  # the official depths (8 + 8 layers): the official config names a size, not a depth
    tok = titok_official("small", "small", num_tokens=8, image_size=32)
    source = save_pretrained(tok, tmp_path / "ours", source="test")
    export(["--model", str(source), "--output", str(tmp_path / "official"), "--format", "titok"])
    assert sorted(p.name for p in (tmp_path / "official").iterdir()) == ["config.json", "model.safetensors"]
    back = load_official("titok", tmp_path / "official")
    torch.manual_seed(3)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(tok.eval().encode(x), back.encode(x))


def test_export_titok_format_refuses_other_architectures(tmp_path):
    from vistok.commands.export import main as export
    from vistok.saving import save_pretrained
    from vistok.tokenizers.registry import build_tokenizer

    source = save_pretrained(build_tokenizer("titok-tiny"), tmp_path / "tiny", source="test")
    with pytest.raises(ValueError, match=r"--format titok: .*tiny is not a TiTok-family model .*FSQQuantizer"):
        export(["--model", str(source), "--output", str(tmp_path / "out"), "--format", "titok"])
    assert not (tmp_path / "out").exists()
    shallow = save_pretrained(tiny_titok(), tmp_path / "shallow", source="test")
    with pytest.raises(ValueError, match=r"the encoder is 512 wide and 1 deep; the official code builds only small"):
        export(["--model", str(shallow), "--output", str(tmp_path / "out"), "--format", "titok"])


def test_finetune_flexible_script_makes_a_released_titok_flexible(tmp_path):
    """scripts/finetune_flexible.py: released weights (here a random TiTok-S at 32 px in the official layout) ->
    nested dropout, two steps with the encoder frozen -> an export whose every prefix decodes."""
    import importlib.util

    from vistok import Tokenizer
    from vistok.importers.titok import export_official
    from vistok.tokenizers.dropout import NestedDropout

    torch.manual_seed(0)
    released = titok_official("small", "small", num_tokens=8, image_size=32)
    export_official(released, tmp_path / "released")
    spec = importlib.util.spec_from_file_location("finetune_flexible",
                                                  Path(__file__).parents[1] / "scripts" / "finetune_flexible.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    export = script.main(["--family", "titok", "--checkpoint", str(tmp_path / "released"), "--dropout", "nested",
                          "--steps", "2", "--batch-size", "2", "--num-workers", "0", "--devices", "1",
                          "--output", str(tmp_path / "flex")])
    tok = Tokenizer.from_pretrained(export)
    assert isinstance(tok.token_dropout, NestedDropout)
    before, after = released.state_dict(), tok.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(("encoder.", "quantizer.")))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("decoder.transformer"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    ids = tok.encode(x)
    assert torch.equal(ids, released.eval().encode(x)), "the frozen encoder gives the released tokens"
    for k in (1, 2, 8):
        assert tok.decode(ids[:, :k]).shape == (1, 3, 32, 32)
