"""Issue 13 item 6: a run with Weights & Biases' logger, offline, keeps its files under the run directory and
logs the reconstruction grid as an image next to the scalar figures. Never reaches the network."""

from __future__ import annotations

import copy

import wandb
import yaml

from tests.test_distributed import TINY_VQ
from vistok.trainers.cli import cli_main, default_wandb_offline


def test_wandb_is_offline_unless_configured():
    env: dict[str, str] = {}
    default_wandb_offline(env)
    assert env == {"WANDB_MODE": "offline"}
    for configured in ({"WANDB_API_KEY": "k"}, {"WANDB_MODE": "online"}, {"WANDB_MODE": "disabled"}):
        env = dict(configured)
        default_wandb_offline(env)
        assert env == configured


def test_wandb_offline_run_has_the_reconstruction_grid(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest disables wandb; here the CLI's default applies
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # must not win over the run directory
    monkeypatch.setenv("WANDB_SILENT", "true")
    if wandb.run is not None:  # an earlier test's open run would be reused by the logger, in its own directory
        wandb.finish()
    config = copy.deepcopy(TINY_VQ)
    config["trainer"].update(devices=1, strategy="auto", max_epochs=None, max_steps=2, val_check_interval=2,
                             logger={"class_path": "lightning.pytorch.loggers.WandbLogger",
                                     "init_args": {"project": "vistok-test"}})
    path = tmp_path / "wandb.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    cli = cli_main(["fit", "--config", str(path), f"--trainer.default_root_dir={run}"])
    cli.trainer.logger.experiment.finish()
    wandb.teardown()  # the offline record is complete once the service process has written it out
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list(run.rglob("*"))[:20]
    images = list(offline[0].rglob("media/images/**/*.png"))
    assert images, "the reconstruction grid is logged to wandb"
    assert (run / "reconstructions" / "step_000002.png").is_file()
    history = next(offline[0].glob("run-*.wandb")).read_bytes()  # the offline run's record, synced later
    for key in ("val/loss", "val/psnr", "val/codebook_usage", "val/codebook_perplexity", "train/loss",
                "train/recon", "train/q_usage"):
        assert key.encode() in history, key
