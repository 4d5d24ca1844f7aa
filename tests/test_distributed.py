"""Issue 13 item 4: two CPU processes (DDP over gloo) train one model.

`vistok fit --trainer.devices 2 --trainer.strategy ddp` runs in a subprocess (Lightning starts the second process
by re-running the command); a probe callback on each rank writes the sample keys it trained on and a digest of
its weights and VQ codebook after every step. Both ranks must hold identical weights and codebooks (the
codebook's EMA statistics are all-reduced only once the process group exists), see disjoint halves of the epoch,
and Lightning must not warn that epoch-level figures are logged per rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).parent

TINY_VQ = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 1, "precision": "32-true",
        "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
        "num_sanity_val_steps": 0, "limit_val_batches": 2,
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
        "callbacks": [
            {"class_path": "vistok.trainers.callbacks.CodebookUsage"},
            {"class_path": "vistok.trainers.callbacks.ReconstructionGrid", "init_args": {"num_images": 2}},
        ],
    },
    "model": {
        "lr": 1e-3, "warmup": 0,
        "tokenizer": {"class_path": "vistok.tokenizers.tokenizer.Tokenizer", "init_args": {
            "encoder": {"class_path": "vistok.tokenizers.titok.TiTokEncoder", "init_args": {
                "image_size": 16, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2, "num_tokens": 4,
                "token_dim": 4}},
            # a small codebook with dead-code replacement: both the EMA update and the replacement must agree
            "quantizer": {"class_path": "vistok.quantizers.vq.VQQuantizer", "init_args": {
                "dim": 4, "codebook_size": 32, "threshold_ema_dead_code": 2.0}},
            "decoder": {"class_path": "vistok.decoders.vit.ViTPixelDecoder", "init_args": {
                "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2}},
        }},
    },
    "data": {"train": "sample", "val": "sample", "image_size": 16, "batch_size": 2, "val_batch_size": 2,
             "train_length": 20, "val_length": 8, "num_workers": 0},
}


def fit_two_processes(tmp_path: Path, config: dict, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    probe = tmp_path / "probe"
    path_entries = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path_entries), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    exe = Path(sys.executable).with_name("vistok")
    cmd = [str(exe), "fit", "--config", str(path), f"--trainer.default_root_dir={tmp_path / 'run'}",
           "--trainer.callbacks+=ddp_probe.RankProbe", f"--trainer.callbacks.out_dir={probe}", *extra]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    reports = [json.loads(p.read_text()) for p in sorted(probe.glob("rank*.json"))] if probe.is_dir() else []
    return r, reports


def test_ddp_two_cpu_processes_agree_and_split_the_data(tmp_path):
    r, (a, b) = fit_two_processes(tmp_path, TINY_VQ)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (a["rank"], b["rank"], a["world_size"]) == (0, 1, 2)
    assert a["steps"] == b["steps"] == 5  # 20 samples / 2 ranks / batch 2
    # The VQ codebook all-reduce was switched on after the process group started, and it kept the ranks equal.
    assert a["codebook_synced"] == b["codebook_synced"] == [True]
    assert a["codebook_tensors"] > 0
    # After every step (DDP re-broadcasts rank 0's buffers before each forward, validation's included: only
    # the state right after a step shows whether each rank updated its codebook from the same statistics).
    assert len(a["codebook"]) == 5
    assert a["codebook"] == b["codebook"], "VQ codebooks differ between ranks"
    assert a["weights"] == b["weights"], "weights differ between ranks"
    # One epoch: each rank its own half, no sample twice, every sample once.
    ka, kb = a["keys"]["0"], b["keys"]["0"]
    assert len(ka) == len(kb) == 10 and not set(ka) & set(kb)
    assert sorted(ka + kb) == [f"sample-train-{i:06d}" for i in range(20)]
    # Validation figures and codebook usage are reduced across ranks: Lightning has nothing to warn about.
    assert "sync_dist" not in r.stderr + r.stdout, r.stderr[-4000:]
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    assert "val/loss" in metrics and "val/codebook_usage" in metrics


def test_ddp_with_a_discriminator_keeps_both_ranks_equal(tmp_path):
    """The adversarial phase under DDP: two backward passes per batch (the generator's, the discriminator's)
    and a discriminator that is idle before its start step; both ranks end with the same tokenizer and
    discriminator, and max_steps still counts generator steps."""
    import copy

    config = copy.deepcopy(TINY_VQ)
    config["model"]["discriminator"] = {"class_path": "vistok.nn.discriminator.NLayerDiscriminator",
                                        "init_args": {"ndf": 8, "n_layers": 1, "norm": "group"}}
    config["model"]["gan"] = {"start_step": 2, "weight": 0.1, "adaptive": True, "lecam_weight": 0.001}
    config["trainer"]["gradient_clip_val"] = 1.0
    r, (a, b) = fit_two_processes(tmp_path, config)
    assert r.returncode == 0, r.stderr[-4000:]
    assert a["steps"] == b["steps"] == 5
    assert a["weights"] == b["weights"], "tokenizer weights differ between ranks"
    assert a["codebook"] == b["codebook"], "VQ codebooks differ between ranks"
    assert a["discriminator"][0] is not None and a["discriminator"] == b["discriminator"], "discriminators differ"


def test_map_style_sampler_splits_an_epoch_across_ranks():
    """The resumable sampler (sample photos, image folders) under 2 ranks: disjoint halves covering the set,
    the same seed per item whichever rank draws it; an odd length pads like torch's DistributedSampler."""
    from vistok.data.resumable import ResumableSampler

    for length in (20, 21):
        halves = [list(ResumableSampler(length, seed=3, batch_size=2, num_replicas=2, rank=r)) for r in (0, 1)]
        ids = [i for half in halves for i, _ in half]
        assert len(halves[0]) == len(halves[1]) == (length + 1) // 2
        assert set(ids) == set(range(length)) and len(ids) - len(set(ids)) == length % 2


def test_webdataset_shards_split_by_rank(tmp_path, monkeypatch):
    """Iterable webdataset sources are split by shard before the shard shuffle: two ranks (webdataset reads
    RANK/WORLD_SIZE, else torch.distributed) read disjoint shards that together cover the set."""
    from tests.test_shards import _write_input_shard
    from vistok.data.folder import webdataset_images

    keys = [k for i in range(4) for k in _write_input_shard(tmp_path / f"in-{i:03d}.tar", 10 * i, 3)]
    urls = str(tmp_path / "in-{000..003}.tar")
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen.append([s["key"] for s in webdataset_images(urls, 16, train=True)])
    assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(keys)


def test_webdataset_training_stream_repeats_per_rank_under_ddp(tmp_path, monkeypatch):
    """Under several processes each rank's training stream cycles its shards (no rank ends the epoch first and
    leaves DDP waiting); too few shards for the readers is a clear error."""
    import pytest

    import vistok.data.datamodule as dm
    from tests.test_shards import _write_input_shard

    for i in range(2):
        _write_input_shard(tmp_path / f"in-{i:03d}.tar", 10 * i, 3)
    monkeypatch.setattr(dm, "is_multiprocess", lambda: True)
    monkeypatch.setattr(dm.dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    data = dm.DataModule(train=str(tmp_path / "in-{000..001}.tar"), val=None, image_size=16, batch_size=2)
    data.setup("fit")
    keys = []
    for batch in data.train_dataloader():
        keys += batch["key"]
        if len(keys) >= 8:
            break
    assert len(keys) == 8 and set(keys) == {"s00010", "s00011", "s00012"}  # rank 1: shard 1, repeated
    three = dm.DataModule(train=str(tmp_path / "in-{000..001}.tar"), val=None, image_size=16, batch_size=2,
                               num_workers=2)
    three.setup("fit")
    with pytest.raises(ValueError, match="2 webdataset shard.*2 processes x 2 workers"):
        three.train_dataloader()
