"""`TokenizerSystem`: the thin LightningModule that trains a `Tokenizer`.

Loss = reconstruction (L1/L2; or a generative decoder's own objective, e.g. rectified flow) + quantizer
auxiliary loss. One step shared by training and validation; EMA, recon grids, codebook usage and the quantizer
warm-up are callbacks (`vistok.trainers.callbacks`). Training randomness (token-dropout lengths, flow noise)
comes from per-module generators whose states every checkpoint keeps (`vistok.trainers.rng`), so a resumed run
continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR

from vistok.configurable import to_config
from vistok.metrics.psnr import per_image_psnr
from vistok.tokenizers.prefixes import prefix_reconstructions
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.trainers.distributed import is_multiprocess, sync_quantizers
from vistok.trainers.losses import reconstruction_loss
from vistok.trainers.rng import TrainingRNG
from vistok.trainers.schedule import warmup_cosine


class TokenizerSystem(pl.LightningModule):
    def __init__(
        self,
        tokenizer: Tokenizer,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup: float = 0.05,
        min_lr_ratio: float = 0.0,
        l1_weight: float = 0.0,
        l2_weight: float = 1.0,
        colour_weight: float = 0.0,
        quantizer_weight: float = 1.0,
        lr_scales: dict[str, float] | None = None,
    ) -> None:
        """`warmup` is a fraction of the run when < 1, else a number of steps. `lr_scales` maps a parameter-name
        fragment to a learning-rate multiplier (e.g. `{"linear_path": 0.1}`; 0 freezes)."""
        super().__init__()
        self.tokenizer = tokenizer
        self.save_hyperparameters(ignore=["tokenizer"])
        self._rng: TrainingRNG | None = None
        self._rng_to_load: list[dict[str, Any]] | None = None

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["image"]  # (B, 3, H, W)
        out = self.tokenizer(x)
        hp = self.hparams
        if out.decoder_loss is not None:  # generative (rectified-flow) decoder: its own objective
            rec, rec_name = out.decoder_loss, "flow"
        else:
            rec, rec_name = reconstruction_loss(out.recon, x, hp.l1_weight, hp.l2_weight, hp.colour_weight), "recon"
        loss = rec + hp.quantizer_weight * out.quant.loss
        b = x.shape[0]
        on_step = stage == "train"
        sync = not on_step  # epoch-level (validation) figures are averaged over processes; per-step ones are not
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=b, on_step=on_step, on_epoch=not on_step,
                 sync_dist=sync)
        self.log(f"{stage}/{rec_name}", rec, batch_size=b, on_step=on_step, on_epoch=not on_step, sync_dist=sync)
        if out.recon is not None:
            self.log(f"{stage}/psnr", per_image_psnr(out.recon, x).mean(), prog_bar=True, batch_size=b, on_step=on_step,
                     on_epoch=not on_step, sync_dist=sync)
        for name, value in out.quant.metrics.items():
            self.log(f"{stage}/q_{name}", value, batch_size=b, on_step=on_step, on_epoch=not on_step, sync_dist=sync)
        # Logged on every batch, 0 included: a synced key must be logged by every rank, or the reduction waits.
        self.log(f"{stage}/skipped", float(batch.get("skipped", 0)), reduce_fx="sum", on_step=False, on_epoch=True,
                 batch_size=b, sync_dist=True)
        return loss, out.quant.indices

    def _all_skipped(self, batch: dict[str, Any], stage: str) -> bool:
        """Every image of the batch failed to load (collate_images dropped them): count them, skip the step."""
        if len(batch["image"]):
            return False
        self.log(f"{stage}/skipped", float(batch.get("skipped", 0)), reduce_fx="sum", on_step=False, on_epoch=True,
                 batch_size=1, sync_dist=True)
        return True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self._all_skipped(batch, "train"):
            return None  # Lightning skips the optimizer step
        return self._step(batch, "train")[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        if self._all_skipped(batch, "val"):
            return None
        _, indices = self._step(batch, "val")
        if self.tokenizer.token_dropout is not None:
            # Quality per prefix length: the point of a flexible-length tokenizer.
            x = batch["image"]
            for k, recon in prefix_reconstructions(self.tokenizer, x):
                self.log(f"val/psnr_k{k}", per_image_psnr(recon, x).mean(), batch_size=x.shape[0], sync_dist=True)
        return {"indices": indices}  # (B, N), for the CodebookUsage callback

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        scales = dict(hp.lr_scales or {})
        groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
        for name, p in self.tokenizer.named_parameters():
            scale = next((v for k, v in scales.items() if k in name), 1.0)
            if scale == 0:
                p.requires_grad_(False)  # frozen: no gradient computed, and counted as non-trainable
            if not p.requires_grad:
                continue
            # Norms, biases and embeddings/learned tokens are not weight-decayed (ViT practice).
            wd = 0.0 if p.ndim < 2 or name.endswith(("_pos", "_token", "_tokens")) else hp.weight_decay
            groups.setdefault((hp.lr * scale, wd), []).append(p)
        opt = torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                                lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup * total) if hp.warmup < 1 else int(hp.warmup)
        sched = LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- processes: model code was built before the process group existed -----------------------------------
    def setup(self, stage: str) -> None:
        sync_quantizers(self.tokenizer, is_multiprocess())  # VQ codebook statistics all-reduced across ranks

    def teardown(self, stage: str) -> None:
        sync_quantizers(self.tokenizer, False)

    # --- random state: seeded at the start of fit, saved per rank in every checkpoint, restored on resume ------
    def on_fit_start(self) -> None:
        # After the checkpoint's weights and the model's device are in place, before the sanity check.
        self._rng = TrainingRNG(self.tokenizer)
        self._rng.seed(torch.initial_seed(), self.global_rank)
        if self._rng_to_load:
            states = self._rng_to_load
            self._rng.load(states[self.global_rank] if len(states) == self.trainer.world_size else states[0])
            self._rng_to_load = None

    def on_validation_start(self) -> None:
        if self._rng is not None:
            self._rng.enter_validation()

    def on_validation_end(self) -> None:
        if self._rng is not None:
            self._rng.leave_validation()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_load = checkpoint.get("vistok_rng")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `vistok export` rebuild the tokenizer from the checkpoint with no config file and no pickle.
        checkpoint["vistok_config"] = to_config(self.tokenizer)
        if self._rng is not None:  # every rank builds the checkpoint, rank 0 writes it: gather each rank's state
            state = self._rng.state()
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                states: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(states, state)
            else:
                states = [state]
            checkpoint["vistok_rng"] = states
