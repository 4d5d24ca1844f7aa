import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import photo_batch
from vistok import Tokenizer
from vistok.loading import load_tokenizer
from vistok.trainers.cli import cli_main

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


def _tiny_overrides(config: Path, root: Path) -> list[str]:
    args = [
        "--trainer.max_steps=1", "--trainer.precision=32-true", f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}", "--trainer.val_check_interval=1",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", "--trainer.max_time=null",
        "--data.batch_size=2", "--data.val_batch_size=2", "--data.num_workers=0",
    ]
    doc = yaml.safe_load(config.read_text())
    if doc["model"]["tokenizer"]["class_path"].endswith("KLAutoencoder"):  # the VAE stage: its layout at 32 px
        prefix = "--model.tokenizer.init_args"
        return args + ["--data.val_length=2", f"{prefix}.image_size=32", f"{prefix}.block_out_channels=[8,16,16,16]",
                       f"{prefix}.norm_num_groups=8", f"{prefix}.layers_per_block=1"]
    data = doc["data"].get("init_args", doc["data"])
    encoder = doc["model"]["tokenizer"]["init_args"]["encoder"]["init_args"]
    prefix = "--model.tokenizer.init_args"
    video = data.get("kind") == "video"
    if video:  # clips of the embedded sample-clips; 5 frames keep the 256 px joint config's step small
        args += ["--data.image_batch_size=2"] if data.get("images") else []
        # the data's clip length is the encoder's (stated once): shortened there
        # (8 for a network that takes whole 4-frame patches only, the official LARP)
        short = 8 if encoder.get("architecture") == "official" and "LARP" in str(doc["model"]["tokenizer"]) else 5
        args += [f"{prefix}.encoder.init_args.num_frames={short}"] if encoder.get("num_frames", 17) > short else []
    else:
        args.append("--data.val_length=2")
    if (doc["model"].get("video_discriminator") or {}).get("init_args", {}).get("depth", 1) > 1:
        args.append("--model.video_discriminator.init_args.depth=1")  # LARP's transformer discriminator: one layer
    if doc["model"]["tokenizer"]["init_args"]["decoder"]["class_path"].endswith("FlowDecoder"):
        # validation decodes every pow2 prefix twice (metrics, grid): 2 Euler steps instead of 25
        args.append(f"{prefix}.decoder.init_args.sampler.init_args.steps=2")
    if doc["model"]["tokenizer"]["init_args"]["encoder"]["class_path"].endswith("OmniEncoder"):
        # space-time blocks: one spatial (window) and one temporal block each side, 64 px (an 8 x 8 grid)
        if encoder.get("image_size", 0) > 64:
            args.append(f"{prefix}.encoder.init_args.image_size=64")  # the data follows the encoder
        for part in ("encoder", "decoder"):
            args += [f"{prefix}.{part}.init_args.spatial_blocks=[window]",
                     f"{prefix}.{part}.init_args.temporal_depth=1"]
            if doc["model"].get("resolution_scales"):  # 64 px x [0.5, 0.75, 1, 1.25]: 4, 6, 8, 10 token grids
                args.append(f"{prefix}.{part}.init_args.window_size=2")  # whole windows at every scale
    elif doc["model"]["tokenizer"]["init_args"]["encoder"]["class_path"].endswith("FlexTokVAEEncoder") and \
            encoder.get("image_size", 0) > 64:  # FlexTok at paper width: 64 px, 16 registers, one layer each side
        args += [f"{prefix}.encoder.init_args.image_size=64",
                 f"{prefix}.encoder.init_args.num_tokens=16", f"{prefix}.encoder.init_args.depth=1",
                 f"{prefix}.decoder.init_args.depth=1"]
    elif encoder.get("image_size", 0) > 64:  # big variants: same widths and shapes, one layer each side
        args += [f"{prefix}.encoder.init_args.depth=1", f"{prefix}.decoder.init_args.depth=1"]
        if doc["model"]["tokenizer"]["init_args"].get("prior"):  # and 64 tokens, one prior layer
            args += [f"{prefix}.encoder.init_args.num_tokens=64", f"{prefix}.prior.init_args.depth=1"]
        if doc["model"]["tokenizer"]["init_args"]["decoder"]["init_args"].get("head") == "proxy":
            args.append(f"{prefix}.encoder.init_args.image_size=32")  # the MaskGIT-VQGAN decoder at 256 px is slow
    if doc["model"].get("proxy_codes"):  # TiTok stage 1: a toy MaskGIT-VQGAN instead of the released 54 M one
        args += [f"--model.proxy_codes.path={_toy_maskgit(root)}", "--model.proxy_codes.load_decoder=false"]
    if doc["model"].get("init_from"):  # TiTok stage 2 starts from a stage-1 run the test does not have
        args.append("--model.init_from=null")
    return args


def _toy_maskgit(root: Path) -> Path:
    """Random MaskGIT-VQGAN weights at a toy width (stride 16, the released 1024 codes): stage-1 configs' target."""
    from vistok.decoders.maskgit_vqgan import MaskGITVQGAN

    path = root.parent / "toy-maskgit-vqgan.pt"  # beside the run directory, not in it
    if not path.is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(MaskGITVQGAN(hidden_channels=32, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=1, z_channels=8)
                   .state_dict(), path)
    return path


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses_and_trains_one_step(config, tmp_path):
    cli = cli_main(["fit", "--config", str(config), *_tiny_overrides(config, tmp_path)])
    assert cli.trainer.global_step == 1
    assert list(tmp_path.rglob("config.yaml")), "the resolved config is saved with the run"
    assert list(tmp_path.rglob("last.ckpt"))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vistok")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_fits_two_steps_then_exports_identical_model(tmp_path):
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    overrides = [a for a in _tiny_overrides(config, tmp_path) if "max_steps" not in a]
    r = _run("fit", "--config", str(config), "--trainer.max_steps=2", *overrides, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "litlogger" not in r.stdout + r.stderr and "LeafSpec" not in r.stderr, "known noise is silenced"
    ckpt = next(tmp_path.rglob("last.ckpt"))
    r = _run("export", "--model", str(ckpt), "--output", str(tmp_path / "export"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "codebook.safetensors", "tokens.json", "README.md"):
        assert (tmp_path / "export" / name).is_file(), name
    x = photo_batch(4)
    from_ckpt, exported = load_tokenizer(ckpt), Tokenizer.from_pretrained(tmp_path / "export")
    assert torch.equal(from_ckpt.encode(x), exported.encode(x))
    assert torch.equal(from_ckpt.decode(from_ckpt.encode(x)), exported.decode(exported.encode(x)))


def test_a_number_stated_twice_that_disagrees_fails_before_work(tmp_path):
    """The data block takes its image size and clip length from the encoder; stating one again differently is
    refused before any data is read, naming both places."""
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    r = _run("fit", "--config", str(config), "--data.image_size=64", cwd=tmp_path)
    assert r.returncode != 0
    assert "data.image_size (64) disagrees with the model's encoder image_size (32)" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
    video = Path(__file__).parents[1] / "configs" / "larp_tiny.yaml"
    r = _run("fit", "--config", str(video), "--data.frames=9", cwd=tmp_path)
    assert "data.frames (9) disagrees with the model's encoder num_frames (5)" in r.stderr, r.stderr[-2000:]


def test_misspelt_config_key_fails_before_work_naming_the_key(tmp_path):
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    r = _run("fit", "--config", str(config), "--model.lrr=0.1", cwd=tmp_path)
    assert r.returncode != 0 and "lrr" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("batch_size:", "bacth_size:", 1))
    r = _run("fit", "--config", str(bad), cwd=tmp_path)
    assert r.returncode != 0 and "bacth_size" in r.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not (tmp_path / "runs").exists()
    # a config written for the earlier separate video data module is told what replaced it
    old = tmp_path / "old_video.yaml"
    old.write_text("data:\n  class_path: vistok.data.video_datamodule.VideoDataModule\n  init_args: {video_size: 32}\n")
    r = _run("fit", "--config", str(Path(config).with_name("larp_tiny.yaml")), "--config", str(old), cwd=tmp_path)
    assert r.returncode != 0 and "state `kind: video`" in r.stderr, r.stderr[-1500:]


def test_wandb_logger_is_selectable_from_the_config_and_runs_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    args = [a for a in _tiny_overrides(config, tmp_path) if "logger" not in a]
    cli = cli_main(["fit", "--config", str(config), *args, "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
                    "--trainer.logger.init_args.offline=true", f"--trainer.logger.init_args.save_dir={tmp_path}",
                    "--trainer.logger.init_args.project=vistok-test"])
    assert type(cli.trainer.logger).__name__ == "WandbLogger"
    assert cli.trainer.global_step == 1
    assert list(tmp_path.rglob("*.wandb")), "an offline run file is written, no account needed"
    cli.trainer.logger.experiment.finish()  # a run left open would be reused by the next WandbLogger


def _parsed_tokenizer(config: Path, *args: str) -> Tokenizer:
    """The tokenizer a config builds through `vistok fit`'s parser (links applied), without training."""
    from vistok.data.datamodule import DataModule
    from vistok.trainers.cli import VistokArgumentParser, VistokCLI
    from vistok.trainers.system import TokenizerSystem

    cli = VistokCLI(TokenizerSystem, DataModule, args=["--config", str(config), "--trainer.logger=false", *args],
                    run=False, parser_class=VistokArgumentParser)
    return cli.model.tokenizer


@pytest.mark.parametrize(("config", "variant"), [("demo.yaml", "titok-demo"), ("demo_rf.yaml", "rf-demo")])
def test_demo_configs_build_the_registered_demo_variants(config, variant):
    from vistok.configurable import to_config
    from vistok.tokenizers import build_tokenizer

    from_yaml = _parsed_tokenizer(Path(__file__).parents[1] / "configs" / config)
    assert to_config(from_yaml) == to_config(build_tokenizer(variant))


def test_a_config_states_n_once_and_the_encoder_sets_it_for_decoder_and_dropout():
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    doc = yaml.safe_load(config.read_text())["model"]["tokenizer"]["init_args"]
    assert "num_tokens" not in doc["decoder"]["init_args"] and "num_tokens" not in doc["token_dropout"]["init_args"]
    assert "token_dim" not in doc["decoder"]["init_args"] and "image_size" not in doc["decoder"]["init_args"]
    enc = "--model.tokenizer.init_args.encoder.init_args"
    tok = _parsed_tokenizer(config, f"{enc}.num_tokens=16", f"{enc}.image_size=16", f"{enc}.patch_size=4",
                            "--model.tokenizer.init_args.decoder.init_args.patch_size=4",
                            f"{enc}.stem_channels=[16,32]", "--model.tokenizer.init_args.decoder.init_args."
                            "head_channels=[32,16]")
    assert (tok.max_tokens, tok.decoder.num_tokens, tok.token_dropout.num_tokens) == (16, 16, 16)
    assert tok.decoder.output_spec == tok.input_spec and tok.input_spec.size == (16, 16)
    assert tok.decode(tok.encode(torch.rand(1, 3, 16, 16) * 2 - 1)).shape == (1, 3, 16, 16)
