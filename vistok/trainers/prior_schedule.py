"""`PriorSchedule`: tells LARP's AR prior how far training has gone, for its scheduled sampling
(`vistok.nn.prior.LARPPrior.sampling_ratio`: the share of the prior's inputs replaced by its own samples grows
linearly to `max_sampling_ratio` at `peak_progress` of the run, as LARP's `mix_ss`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class PriorSchedule(pl.Callback):
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        prior = getattr(getattr(pl_module, "tokenizer", None), "prior", None)
        if prior is not None and hasattr(prior, "progress"):
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 \
                else trainer.estimated_stepping_batches
            prior.progress = min(1.0, trainer.global_step / max(1, int(total)))
