"""Exact resume (issue 11, item 5): one run directory per run, periodic checkpoints, and a run killed with
SIGKILL then resumed with `--ckpt_path last` logs the same per-step losses as an uninterrupted run."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from tests.test_configs import _tiny_overrides
from vistok.data.resumable import ResumableSampler
from vistok.data.sample import SamplePhotoCrops
from vistok.decoders.flow import FlowDecoder
from vistok.decoders.rectified_flow import RectifiedFlow
from vistok.tokenizers.dropout import NestedDropout, TailDrop
from vistok.trainers.rng import TrainingRNG

ROOT = Path(__file__).parents[1]
# Warm-up until step 9, then nested dropout draws; epochs of 12 batches; validation every 10 steps; killed at 16.
STEPS, EVERY, WARMUP, KILL = 30, 8, 0.3, 16


class PauseAt(pl.Callback):
    """Test only: stops the run to be killed at a known step (after that step's checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            time.sleep(600)


def _config(tmp_path: Path, pause: bool = False) -> Path:
    """demo.yaml, small: PCA on 256 crops, a checkpoint every 8 steps (no time trigger), QuantizerWarmup added."""
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    callbacks = doc["trainer"]["callbacks"]
    for cb in callbacks:
        if cb["class_path"].endswith("PCAInit"):
            cb["init_args"]["num_images"] = 256
        if cb["class_path"].endswith("PeriodicCheckpoint"):
            cb["init_args"] = {"every_n_train_steps": EVERY, "every_n_minutes": None}
    callbacks.insert(1, {"class_path": "vistok.trainers.callbacks.QuantizerWarmup",
                         "init_args": {"fraction": WARMUP}})
    if pause:
        callbacks.append({"class_path": "tests.test_resume.PauseAt", "init_args": {"step": KILL}})
    path = tmp_path / ("pause.yaml" if pause else "resume.yaml")
    path.write_text(yaml.safe_dump(doc))
    return path


def _fit(config: Path, root: Path, *extra: str) -> subprocess.Popen:
    args = [a for a in _tiny_overrides(config, root) if not a.startswith(("--trainer.max_steps", "--trainer.val_check",
                                                                          "--trainer.logger", "--data.batch_size"))]
    cmd = [str(Path(sys.executable).with_name("vistok")), "fit", "--config", str(config), *args,
           f"--trainer.max_steps={STEPS}", "--trainer.val_check_interval=10", "--trainer.log_every_n_steps=1",
           "--trainer.logger.init_args.flush_logs_every_n_steps=1", "--data.batch_size=4", "--data.train_length=48",
           *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VISTOK_DEBUG": "1"}
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _losses(root: Path) -> dict[int, float]:
    """step -> train/loss from the run's metrics.csv; a step logged twice (after the checkpoint, before the
    kill, then again by the resumed run) keeps its last row."""
    out = {}
    with open(root / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def _step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def test_killed_run_resumes_exactly_like_an_uninterrupted_one(tmp_path):
    config = _config(tmp_path)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir()
    cut.mkdir()
    reference = _fit(config, whole)  # the uninterrupted run, alongside
    victim = _fit(_config(tmp_path, pause=True), cut)
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while victim.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        try:
            if _step(last) == KILL:
                break
        except (OSError, RuntimeError, EOFError):  # not there yet
            pass
    victim.send_signal(signal.SIGKILL)
    out = victim.communicate()[0]
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{out[-3000:]}"
    killed_at = _step(last)
    assert killed_at == KILL, out[-3000:]

    resumed = _fit(config, cut, "--ckpt_path=last")
    out_resumed = resumed.communicate(timeout=300)[0]
    out_whole = reference.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out_resumed[-3000:]
    assert reference.returncode == 0, out_whole[-3000:]
    assert "Restoring states from the checkpoint path" in out_resumed
    assert "resuming from a checkpoint that ended before the epoch ended" not in out_resumed
    # One run directory: the same files, no version_N per attempt.
    assert not list(cut.rglob("version_*")) and (cut / "config.yaml").is_file()
    assert f"checkpoint {cut / 'checkpoints' / 'last.ckpt'}" in out_resumed  # fit says where it went
    assert _step(last) == STEPS == _step(whole / "checkpoints" / "last.ckpt")

    a, b = _losses(whole), _losses(cut)
    after = [s for s in sorted(a) if s >= killed_at]
    assert len(after) == STEPS - killed_at, sorted(a)
    # Before the kill: the warm-up (no rounding, no token dropout) ended at step 9, nested dropout drew lengths,
    # an epoch (12 batches) and a validation ended; after it, the run continues mid-epoch, validates, crosses
    # an epoch end, and every loss is the uninterrupted run's.
    assert WARMUP * STEPS < killed_at and min(after) < 24 <= max(after)
    torch.testing.assert_close(torch.tensor([b[s] for s in after]), torch.tensor([a[s] for s in after]),
                               rtol=1e-5, atol=1e-6)
    # The path is random after the warm-up: without the restored states the losses would differ.
    assert len({round(a[s], 6) for s in after}) > len(after) // 2


def test_rf_training_draws_repeat_from_a_restored_generator_state():
    torch.manual_seed(0)
    dec = FlowDecoder(image_size=32, patch_size=8, width=32, depth=1, num_heads=2, num_tokens=8, token_dim=4,
                      objective=RectifiedFlow(cond_drop_prob=0.5))
    codes, images = torch.randn(6, 8, 4), torch.rand(6, 3, 32, 32) * 2 - 1
    seen = []
    real = dec.objective.loss

    def spy(velocity, x0, context, null, generator=None):
        def wrapped(x_t, sigma, ctx):
            seen.append((x_t.clone(), sigma.clone(), ctx.clone()))
            return velocity(x_t, sigma, ctx)
        return real(wrapped, x0, context, null, generator)

    dec.objective.loss = spy
    TrainingRNG(dec).seed(7)
    state = TrainingRNG(dec).state()
    first = [dec.training_loss(codes, None, images)[0] for _ in range(3)]
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(5)
    TrainingRNG(dec).load(state)
    again = [dec.training_loss(codes, None, images)[0] for _ in range(3)]
    assert torch.equal(torch.stack(first), torch.stack(again))
    for (x1, s1, c1), (x2, s2, c2) in zip(seen[:3], seen[3:]):  # noised input (noise), sigma, dropped condition
        assert torch.equal(x1, x2) and torch.equal(s1, s2) and torch.equal(c1, c2)
    assert len({float(s[0]) for _, s, _ in seen[:3]}) == 3  # three different draws, repeated
    null_rows = [(c == dec.null_condition(6)).flatten(1).all(1) for _, _, c in seen[:3]]
    assert 0 < int(sum(r.sum() for r in null_rows)) < 18  # condition dropout drew both ways


@pytest.mark.parametrize("module", [NestedDropout(16, "uniform_pow2", full_prob=0.25), TailDrop(16)])
def test_token_dropout_lengths_repeat_from_a_restored_generator_state(module):
    module.train()
    rng = TrainingRNG(module)
    rng.seed(3)
    state = rng.state()
    codes = torch.randn(32, 16, 4)

    def draws():
        outs = [module(codes) for _ in range(4)]
        return [o[0].shape[1] if o[1] is None else o[1].sum(1).tolist() for o in outs]

    first = draws()
    torch.manual_seed(99)
    rng.load(state)
    assert draws() == first


def test_sampler_skips_consumed_batches_and_items_are_functions_of_seed_epoch_index():
    s = ResumableSampler(40, seed=5, batch_size=4)
    s.set_epoch(2)
    full = list(s)
    assert sorted(i for i, _ in full) == list(range(40)) and len({seed for _, seed in full}) == 40
    resumed = ResumableSampler(40, seed=5, batch_size=4)
    resumed.set_epoch(2)
    resumed.skip(2, 3)
    assert list(resumed) == full[12:]
    assert list(resumed) == full  # the skip applies once
    s.set_epoch(3)
    assert list(s) != full  # a new order and new crops every epoch
    ds = SamplePhotoCrops("train", 32, 40)
    assert torch.equal(ds[full[0]]["image"], ds[full[0]]["image"])
    ranks = [ResumableSampler(10, seed=1, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [[i for i, _ in r] for r in ranks]  # every index, padded to 4 per rank as torch's sampler does
    assert {i for r in per_rank for i in r} == set(range(10)) and [len(r) for r in per_rank] == [4, 4, 4]


def test_run_directory_is_default_root_dir_for_logger_and_checkpoints(tmp_path):
    from vistok.trainers.cli import cli_main

    config = ROOT / "configs" / "demo.yaml"
    text = config.read_text().replace("num_images: 4096", "num_images: 256")
    small = tmp_path / "demo.yaml"
    small.write_text(text)
    root = tmp_path / "run"
    args = [a for a in _tiny_overrides(small, root) if "logger" not in a]  # the YAML's save_dir: runs/demo
    cli = cli_main(["fit", "--config", str(small), *args])
    assert os.path.realpath(cli.trainer.log_dir) == os.path.realpath(root)
    assert (root / "checkpoints" / "last.ckpt").is_file() and (root / "metrics.csv").is_file()
    assert (root / "config.yaml").is_file() and not list(root.rglob("version_*"))
    again = cli_main(["fit", "--config", str(small), *args, "--trainer.max_steps=2", "--ckpt_path=last"])
    assert again.trainer.global_step == 2 and not list(root.rglob("version_*"))
