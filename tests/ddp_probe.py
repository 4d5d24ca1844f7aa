"""A callback for the multi-process tests: each rank writes what it trained on and a digest of its weights.

Named by class path in a `vistok fit` command line, so every DDP process (Lightning re-runs the command)
imports it from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


class RankProbe(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.keys: dict[int, list[str]] = {}
        self.codebooks: list[str] = []  # after every optimizer step, before DDP's next buffer broadcast
        self.weights: list[str] = []
        self.buffers: list[dict[str, str]] = []  # per buffer: DDP broadcasts rank 0's before each forward

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.keys.setdefault(trainer.current_epoch, []).extend(batch["key"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if len(self.weights) >= trainer.global_step:  # no step on this batch (gradient accumulation)
            return
        state = pl_module.tokenizer.state_dict()
        self.codebooks.append(digest({k: v for k, v in state.items() if "codebook" in k}))
        buffers = {name for name, _ in pl_module.tokenizer.named_buffers()}
        self.weights.append(digest({k: v for k, v in state.items() if "codebook" not in k and k not in buffers}))
        self.buffers.append({k: digest({k: v}) for k, v in state.items() if "codebook" not in k and k in buffers})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = pl_module.tokenizer.state_dict()
        vq = [m for m in pl_module.tokenizer.modules() if hasattr(m, "set_distributed") and hasattr(m, "vq")]
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "keys": {str(e): k for e, k in self.keys.items()},
            "weights": self.weights,
            "buffers": self.buffers,
            "codebook": self.codebooks,
            "codebook_tensors": sum("codebook" in k for k in state),
            "codebook_synced": [bool(m.vq._codebook.use_ddp) for m in vq],
            "steps": trainer.global_step,
            "discriminator": [digest(d.state_dict()) if d is not None else None
                              for d in (getattr(pl_module, "discriminator", None),
                                        getattr(pl_module, "video_discriminator", None))],
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
        if os.environ.get("RANK_PROBE_STATE"):
            torch.save(state, self.out_dir / f"rank{trainer.global_rank}.pt")
