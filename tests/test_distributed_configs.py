"""Issue 25 item 1: every config in `configs/` trains on 2 processes (DDP over gloo, CPU).

Each config keeps its structure (encoder, quantizer, decoder, token dropout, prior, losses, discriminator,
callbacks) and gets the one-step test's tiny overrides (`test_configs._tiny_overrides`: batch 2, one layer per
side for the 256 px variants, 64 px video), 64 px images, and 3 steps on 2 processes. Both ranks run every config in one
pair of processes (`ddp_configs_worker.py`); the probe callback (`ddp_probe.RankProbe`) records per rank the
sample keys of each step and a digest of the weights and VQ codebooks after each step. For every config:
both ranks finish, hold identical weights, codebooks and discriminator after every step (DDP's gradient
all-reduce and the codebook statistics sync), and train on disjoint samples (each rank its own shard of the
epoch: the global batch is batch_size x 2).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_configs import CONFIGS, _tiny_overrides

TESTS = Path(__file__).parent
# 3 steps: DDP reports a parameter that got no gradient at the *next* step, so joint image + video configs
# (a video batch, then an image batch) fail only from the third step on if their image steps leave weights idle.
STEPS = 3


def _small_pca(config: Path, tmp_path: Path) -> Path:
    """PCAInit fits on 4,096 images by default: the fewest the fit accepts here (N x d samples) keep the
    structure and cost a second."""
    doc = yaml.safe_load(config.read_text())
    callbacks = doc.get("trainer", {}).get("callbacks") or []
    changed = False
    for cb in callbacks:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("PCAInit"):
            cb.setdefault("init_args", {})["num_images"] = 256
            changed = True
    if not changed:
        return config
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(doc))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _selected() -> list[Path]:
    """VISTOK_DDP_CONFIGS=stem,stem runs only those configs (the fixture trains every config otherwise, whatever
    -k selects)."""
    names = [n for n in os.environ.get("VISTOK_DDP_CONFIGS", "").split(",") if n]
    return [c for c in CONFIGS if c.stem in names] if names else CONFIGS


def _jobs(tmp_path: Path) -> list[tuple[str, list[str]]]:
    jobs = []
    for config in _selected():
        root = tmp_path / config.stem
        args = [a for a in _tiny_overrides(config, root) if not a.startswith(("--trainer.max_steps",
                                                                              "--trainer.val_check_interval"))]
        doc = yaml.safe_load(config.read_text())["model"]["tokenizer"]["init_args"].get("encoder")  # None: a VAE
        if doc and doc["init_args"].get("image_size", 0) > 64 and not doc["class_path"].endswith("OmniEncoder"):
            # the 256 px variants at 64 px (a 4 x 4 grid of their 16 px patches): the same modules, 16x less work
            args.append("--model.tokenizer.init_args.encoder.init_args.image_size=64")
        args = ["--config", str(_small_pca(config, tmp_path)), *args,
                "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
                f"--trainer.max_steps={STEPS}", f"--trainer.val_check_interval={STEPS}",
                "--trainer.enable_model_summary=false",
                "--trainer.callbacks+=ddp_probe.RankProbe", f"--trainer.callbacks.out_dir={root / 'probe'}"]
        jobs.append((config.stem, args))
    return jobs


@pytest.fixture(scope="module")
def every_config_on_two_ranks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp_configs")
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps(_jobs(tmp_path)))
    base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent),
                                                         os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2", "NODE_RANK": "0"}
    procs = [subprocess.Popen([sys.executable, str(TESTS / "ddp_configs_worker.py"), str(jobs), str(tmp_path)],
                              cwd=tmp_path, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = []
    for p in procs:
        try:
            # 31 configs one after another: ~10 minutes on a busy 2-core machine; the limit only catches a hang
            logs.append(p.communicate(timeout=1800)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            logs.append(p.communicate()[0])
    done = [json.loads(f.read_text())["errors"] if f.is_file() else {} for f in
            (tmp_path / "done-rank0.json", tmp_path / "done-rank1.json")]
    return tmp_path, done, logs


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_trains_on_two_processes(every_config_on_two_ranks, config):
    if config not in _selected():
        pytest.skip("not in VISTOK_DDP_CONFIGS")
    tmp_path, done, logs = every_config_on_two_ranks
    for rank in (0, 1):
        assert config.stem in done[rank], f"rank {rank} did not finish {config.stem}:\n{logs[rank][-4000:]}"
        other = logs[1 - rank][-3000:]  # a gloo error on one rank usually means the other one crashed
        assert done[rank][config.stem] is None, \
            f"rank {rank}: {done[rank][config.stem]}\nlog of rank {1 - rank} (end):\n{other}"
    a, b = (json.loads((tmp_path / config.stem / "probe" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (a["rank"], b["rank"], a["world_size"]) == (0, 1, 2)
    assert a["steps"] == b["steps"] == STEPS
    assert len(a["weights"]) == STEPS and a["weights"] == b["weights"], "weights differ between ranks"
    # Buffers too (FSQ's input norm: running statistics of the global batch), right after each step, before
    # DDP's broadcast of rank 0's buffers would hide a difference.
    assert a["buffers"] == b["buffers"], "buffers differ between ranks"
    assert a["codebook"] == b["codebook"], "VQ codebooks differ between ranks"
    assert a["codebook_synced"] == b["codebook_synced"] and all(a["codebook_synced"])
    assert a["discriminator"] == b["discriminator"], "discriminators differ between ranks"
    ka = [k for keys in a["keys"].values() for k in keys]
    kb = [k for keys in b["keys"].values() for k in keys]
    assert ka and kb and not set(ka) & set(kb), "the ranks trained on the same samples"


def _global_norm_rank(rank: int, init: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from vistok.nn.global_batch_norm import GlobalBatchNorm1d

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5) * 3 + 1  # the same global batch on both ranks; each takes its half
    norm = GlobalBatchNorm1d(3, affine=False)
    norm.sync = True
    part = x[2 * rank: 2 * rank + 2].clone().requires_grad_(True)
    y = norm(part)
    (y * torch.arange(30.0).view(2, 3, 5)).sum().backward()
    torch.save({"y": y.detach(), "grad": part.grad, "mean": norm.running_mean, "var": norm.running_var},
               f"{out}/norm{rank}.pt")
    dist.destroy_process_group()


def test_fsq_input_norm_normalises_the_global_batch(tmp_path):
    """Two gloo ranks each holding half a batch get the outputs, input gradients and running statistics of
    one BatchNorm over the whole batch (what SyncBatchNorm does on GPUs; it refuses CPU tensors)."""
    import torch
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'store'}"
    mp.start_processes(_global_norm_rank, args=(init, str(tmp_path)), nprocs=2, start_method="spawn")
    got = [torch.load(tmp_path / f"norm{r}.pt") for r in (0, 1)]
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 5) * 3 + 1).requires_grad_(True)
    ref = torch.nn.BatchNorm1d(3, affine=False)
    y = ref(x)
    (y * torch.cat([torch.arange(30.0).view(2, 3, 5)] * 2)).sum().backward()
    torch.testing.assert_close(torch.cat([g["y"] for g in got]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([g["grad"] for g in got]), x.grad, atol=1e-5, rtol=1e-5)
    for g in got:
        torch.testing.assert_close(g["mean"], ref.running_mean)
        torch.testing.assert_close(g["var"], ref.running_var)
