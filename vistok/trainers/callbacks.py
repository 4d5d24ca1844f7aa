"""Training callbacks: quantizer warm-up, reconstruction grids, codebook usage, periodic checkpoints, EMA.

EMA weights come from Lightning's own `EMAWeightAveraging` (used for validation and saved as the
checkpoint's `state_dict`, hence exported); `TokenizerEMA` is the same callback for a system with a
discriminator, whose weights it does not average.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from vistok.decoders.kl_vae import KLAutoencoder
from vistok.metrics.codebook import code_counts, usage_from_counts
from vistok.metrics.report import save_image_grid
from vistok.tokenizers.prefixes import pow2_lengths, prefix_reconstructions
from vistok.trainers.batches import pixels
from vistok.trainers.image_logging import log_image


class QuantizerWarmup(pl.Callback):
    """For the first `fraction` of training, quantize without rounding (FSQ) and keep every token.

    Our CPU calibration (docs/benchmarks.md#early-calibration-on-the-cpu): with rounding and nested dropout
    from step 0 a small TiTok collapses to the average image; a continuous bottleneck first lets the tokens
    learn to carry the image.
    """

    def __init__(self, fraction: float = 0.25) -> None:
        self.fraction = fraction

    def _set(self, pl_module: pl.LightningModule, warm: bool) -> None:
        tok = pl_module.tokenizer
        if hasattr(tok.quantizer, "rounding"):
            tok.quantizer.rounding = not warm
        if tok.token_dropout is not None:
            tok.token_dropout.enabled = not warm

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        warm = trainer.global_step < self.fraction * trainer.estimated_stepping_batches
        self._set(pl_module, warm)
        pl_module.log("train/warmup_phase", float(warm), on_step=True, on_epoch=False)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(pl_module, False)  # validation always measures the real, rounded tokens


def _middle_frame(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) as is; a video batch (B, C, T, H, W) -> its middle frame (a grid shows one frame per clip)."""
    return x[:, :, x.shape[2] // 2] if x.ndim == 5 else x


class ReconstructionGrid(pl.Callback):
    """At each validation, write originals next to reconstructions (one column per K for flexible
    tokenizers) to `<log_dir>/reconstructions/step_<N>.png`, and give the picture to the image-capable loggers
    of the run (wandb, TensorBoard) as `val/reconstructions`."""

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images
        self._batch: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self._batch = None
        x = pixels(batch)
        if self._batch is None and len(x):  # the first batch with images (all may be skipped)
            self._batch = x[: self.num_images]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Every rank asks: under DDP `trainer.log_dir` is a broadcast from rank 0, a collective that would wait
        # forever if rank 0 alone called it.
        log_dir = Path(trainer.log_dir or ".")
        if self._batch is None or not trainer.is_global_zero:
            self._batch = None
            return
        tok, x = pl_module.tokenizer, self._batch
        if isinstance(tok, KLAutoencoder):  # a VAE: its reconstruction from the posterior mean
            with torch.no_grad():
                columns, labels = [x, tok.decode(tok.encode(x)).clamp(-1, 1)], ["input", "VAE"]
        else:
            ks = pow2_lengths(tok.max_tokens) if tok.token_dropout is not None else [tok.max_tokens]
            columns = [_middle_frame(c) for c in [x] + [recon for _, recon in prefix_reconstructions(tok, x, ks)]]
            labels = ["input"] + [f"K={k}" for k in ks]
        out = log_dir / "reconstructions" / f"step_{trainer.global_step:06d}.png"
        save_image_grid(columns, out, labels, f"step {trainer.global_step}")
        log_image(trainer.loggers, "val/reconstructions", out, trainer.global_step)
        self._batch = None


class CodebookUsage(pl.Callback):
    """Over each validation epoch: share of codes used, perplexity of the code histogram, dead codes."""

    def __init__(self) -> None:
        self._counts: torch.Tensor | None = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.tokenizer.continuous:  # a KL bottleneck: no codebook to count
            self._counts = None
            return
        self._counts = torch.zeros(pl_module.tokenizer.codebook_size, dtype=torch.long, device=pl_module.device)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._counts is not None and outputs and "indices" in outputs:
            self._counts += code_counts(outputs["indices"], self._counts.numel())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._counts is None:
            return
        counts = trainer.strategy.reduce(self._counts, reduce_op="sum")  # summed over processes
        stats = usage_from_counts(counts)
        # Equal on every rank already: sync_dist averages equal values (and tells Lightning they are global).
        pl_module.log("val/codebook_usage", stats["usage"].float(), sync_dist=True)
        pl_module.log("val/codebook_perplexity", stats["perplexity"].float(), sync_dist=True)


class PCAInit(pl.Callback):
    """Before training, fit the tokenizer's linear paths to a PCA of `num_images` training images
    (`vistok.tokenizers.pca_init`). It runs in `setup`: before the EMA callback copies the weights (list it
    first), before DDP broadcasts rank 0's weights to the other ranks, and before a checkpoint is restored,
    so a resumed run ends up with its checkpoint's weights, not a new initialisation. A grid video tokenizer
    (per-patch paths, `patch_pca_init`) is fitted to `num_images` training clips instead (the video batches of
    a mixed stream)."""

    def __init__(self, num_images: int = 4096, alpha: float = 0.5) -> None:
        self.num_images, self.alpha = num_images, alpha

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from vistok.nn.linear_path import VideoPatchLinearPath
        from vistok.tokenizers.pca_init import patch_pca_init, pca_init

        video = isinstance(pl_module.tokenizer.encoder.linear_path, VideoPatchLinearPath)  # per-patch (video)
        key = "video" if video else "image"
        loader = trainer.datamodule.train_dataloader()
        items, n, epoch = [], 0, 0
        while n < self.num_images:  # more than one pass over a small training set (new crops each epoch)
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            before = n
            for batch in loader:
                if key not in batch:  # the image batches of a mixed video stream
                    continue
                items.append(batch[key])
                n += batch[key].shape[0]
                if n >= self.num_images:
                    break
            if n == before:
                break  # an empty source: the fit says how many items it needs
            epoch += 1
        data = torch.cat(items)[: self.num_images] if items else torch.zeros(0, 3, 1, 1, 1 if video else 1)
        if video:
            stats = patch_pca_init(pl_module.tokenizer, data, self.alpha)
            kept = f"{100 * stats['explained_variance_first']:.1f}% (first frame) / " \
                   f"{100 * stats['explained_variance_rest']:.1f}% (later frames) of the patch variance"
        else:
            stats = pca_init(pl_module.tokenizer, data, self.alpha)
            kept = f"{100 * stats['explained_variance']:.1f}% of the variance"
        if trainer.is_global_zero:
            print(f"PCA initialisation on {len(data)} training {key}s: the linear paths keep {kept}")


class PeriodicCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` steps or every `every_n_minutes` minutes, whichever comes first,
    and at the end of training; a run killed at any moment loses at most that much work and resumes with
    `vistok fit --config ... --ckpt_path last`. Other ModelCheckpoint arguments pass through (`save_top_k`: 0,
    only `last.ckpt`; >0 with a `monitor` keeps the best ones too). The directory is `<run>/checkpoints`.

    Lightning's ModelCheckpoint refuses both triggers together in its constructor although its batch-end check
    handles both (save when either is due); this sets the time trigger after construction."""

    def __init__(self, every_n_train_steps: int | None = 500, every_n_minutes: float | None = 5.0,
                 save_last: bool = True, save_top_k: int = 0, **kwargs: Any) -> None:
        super().__init__(every_n_train_steps=every_n_train_steps, save_last=save_last, save_top_k=save_top_k,
                         **kwargs)
        if every_n_minutes is not None and every_n_minutes <= 0:
            raise ValueError(f"every_n_minutes must be > 0 or null, got {every_n_minutes}")
        self._train_time_interval = timedelta(minutes=every_n_minutes) if every_n_minutes else None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # The last step when no trigger fell on it; here, before the EMA callback's on_train_end puts the
        # averaged weights into the model (a checkpoint then would resume from them).
        if 0 < trainer.max_steps <= trainer.global_step:
            self._save_final(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_final(trainer)  # other stops (max_time, max_epochs)

    def _save_final(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


DISCRIMINATORS = ("discriminator", "video_discriminator")  # TokenizerSystem's, image and video


class TokenizerEMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging` (same arguments, same checkpoint format) that averages the tokenizer
    only: the averaged copy of a discriminator follows the trained one after every update, so validation, the
    end of training and the checkpoint's `state_dict` all see the discriminator as trained (an averaged
    discriminator would judge weights it never trained against). It updates once per generator step, as
    `global_step` counts only those. Without a discriminator it is `EMAWeightAveraging`."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._average_model is None:
            return
        for name in DISCRIMINATORS:
            disc = getattr(pl_module, name, None)
            if disc is not None:
                getattr(self._average_model.module, name).load_state_dict(disc.state_dict())


def check_weight_averaging(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
    """With a discriminator (image or video), refuse Lightning's plain weight averaging, which would average it
    too."""
    from lightning.pytorch.callbacks import WeightAveraging

    if all(getattr(pl_module, name, None) is None for name in DISCRIMINATORS):
        return
    for cb in trainer.callbacks:
        if isinstance(cb, WeightAveraging) and not isinstance(cb, TokenizerEMA):
            raise ValueError(f"{type(cb).__name__} would average the discriminator's weights too: with a "
                             "discriminator use vistok.trainers.callbacks.TokenizerEMA (same arguments)")
