"""`TokenizerSystem`: the thin LightningModule that trains a `Tokenizer`.

Loss = the weighted sum of named terms (`vistok.trainers.losses`): the model's own (quantizer, or a continuous
bottleneck's KL; a generative decoder's objective, e.g. rectified flow; an AR prior), the pixel terms
(L1/L2/colour), optionally a perceptual loss (`perceptual:`, `vistok.trainers.perceptual`) and, with a
`discriminator` and/or a `video_discriminator`, an adversarial phase (`gan:`, `vistok.trainers.adversarial`:
the GAN term and GAN feature matching). The weights are one mapping, `loss_weights`; every term is logged under its
name in one loop. One step shared by training and
validation; EMA, recon grids, codebook usage and the quantizer warm-up are callbacks
(`vistok.trainers.callbacks`). Training randomness (token-dropout lengths, flow noise) comes from per-module
generators whose states every checkpoint keeps (`vistok.trainers.rng`), so a resumed run continues exactly
where the interrupted one stopped. A NaN or infinite loss stops the run before it touches the weights
(`vistok.trainers.finite`).

Without a discriminator Lightning optimises automatically, as before. With one (or two: image and video), the
system optimises manually with two optimizers (the discriminators share the second): per batch one generator step
(the only step Lightning counts, so `max_steps`, checkpoint cadence, EMA, schedules and the quantizer warm-up all
count generator steps) and, from `gan.start_step` on (every `gan.every` steps), one discriminator step taken
through the strategy without advancing `global_step`. Lightning refuses a trainer
`gradient_clip_val` under manual optimisation; the system takes that value over and clips both optimizers itself.

Batches are `{"image": (B, 3, H, W)}` or `{"video": (B, 3, T, H, W)}` (float in [-1, 1]); PSNR is per image, or
per clip over all its frames. `init_from` loads another run's matching tokenizer weights before training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vistok.configurable import to_config
from vistok.decoders.kl_vae import KLAutoencoder
from vistok.devices import is_multiprocess
from vistok.metrics.psnr import per_image_psnr
from vistok.tokenizers.prefixes import prefix_reconstructions
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.trainers.adversarial import AdversarialLoss, GANSettings, frames
from vistok.trainers.batches import pixels
from vistok.trainers.callbacks import check_weight_averaging
from vistok.trainers.checks import check_discriminators, check_terms, generative
from vistok.trainers.distributed import allow_partial_backward, freeze_zero_lr, sync_quantizers, video_only_parameters
from vistok.trainers.finite import check_losses, check_weights
from vistok.trainers.losses import PIXEL_TERMS, pixel_terms, resolve_weights
from vistok.trainers.multiresolution import MultiResolution
from vistok.trainers.optimizers import discriminator_optimizer, tokenizer_optimizer
from vistok.trainers.perceptual import PerceptualSettings, build_perceptual
from vistok.trainers.proxy_codes import ProxyCodeSettings
from vistok.trainers.rng import TrainingRNG
from vistok.trainers.schedule import warmup_cosine, warmup_steps


class TokenizerSystem(pl.LightningModule):
    def __init__(
        self,
        tokenizer: Tokenizer | KLAutoencoder,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup: float = 0.05,
        min_lr_ratio: float = 0.0,
        warmup_start: float = 0.0,
        loss_weights: dict[str, float] | None = None,
        lr_scales: dict[str, float] | None = None,
        init_from: str | None = None,
        discriminator: nn.Module | None = None,
        gan: GANSettings | None = None,
        perceptual: PerceptualSettings | None = None,
        video_discriminator: nn.Module | None = None,
        proxy_codes: ProxyCodeSettings | None = None,
        init_discriminators: bool = False,
        resolution_scales: list[float] | None = None,
    ) -> None:
        """`warmup` is a fraction of the run when < 1, else a number of steps; the learning rate rises linearly
        from `warmup_start` of its peak (0; LARP's 0.01, its floor) to the peak, then falls on a cosine to
        `min_lr_ratio` of it. `lr_scales` maps a parameter-name
        fragment to a learning-rate multiplier (e.g. `{"linear_path": 0.1}`; 0 freezes). `loss_weights`: weight per
        loss term name (`l1`, `l2`, `colour`, `quantizer`, `kl`, `flow`, `prior`, `proxy_codes`), over
        `DEFAULT_WEIGHTS` (L2 1, quantizer 1, kl 1e-6, flow 1, prior 0.1, proxy_codes 1); a term this model cannot
        produce is refused. `init_from`: an export directory or `.ckpt` whose matching tokenizer weights are loaded
        now (missing and unexpected names are reported, a shape mismatch is refused naming the tensor); a resumed
        run's checkpoint still wins. Parameters frozen by `lr_scales` 0 must be given by `init_from` when there is
        one (a stage-2 run whose frozen encoder the stage-1 checkpoint lacks would train a decoder on a random
        encoder). `init_discriminators`: with `init_from`, also load the discriminators' weights from it, which must
        then be a fit checkpoint holding every discriminator this system has (OmniTokenizer's stage 3 continues
        stage 2's video discriminator, the official `--init_vdis keep`); off, or without `init_from` (a run from
        scratch), they start afresh. `discriminator` (e.g.
        `vistok.nn.discriminator.NLayerDiscriminator`, judging frames) and/or
        `video_discriminator` (judging clips: `NLayerDiscriminator3D`,
        `vistok.nn.transformer_discriminator.TransformerDiscriminator`) turn on the adversarial phase with `gan`'s
        settings (defaults when None); `perceptual` adds a perceptual loss to the reconstruction loss in training.
        `proxy_codes` makes the run TiTok's stage 1 (`vistok.trainers.proxy_codes`): cross-entropy against the
        codes of the frozen MaskGIT-VQGAN it names, no pixels decoded in training. `tokenizer` may also be a
        `KLAutoencoder` (the VAE stage of a latent-space tokenizer, FlexTok's): it has no quantizer, and its own
        term is `kl`. `resolution_scales` (e.g. OmniTokenizer's `[0.5, 0.75, 1.0, 1.25]`): each training batch is
        resized to one of these scales of its size, drawn at random (`vistok.trainers.multiresolution`); a scale
        the model cannot take is refused now."""
        super().__init__()
        if not 0.0 <= warmup_start <= 1.0:
            raise ValueError(f"warmup_start must be a fraction of the peak learning rate in [0, 1], got {warmup_start}")
        # first: a scale the model cannot take is refused before init_from loads anything
        self.multiresolution = MultiResolution(resolution_scales, tokenizer, (discriminator, video_discriminator),
                                               proxy_codes is not None) if resolution_scales else None
        self.tokenizer = tokenizer
        freeze_zero_lr(tokenizer, lr_scales)  # now, not in configure_optimizers: DDP wraps the model before that
        if init_from:
            from vistok.trainers.init_from import load_matching_weights

            missing, unexpected = load_matching_weights(tokenizer, init_from)
            frozen = [n for n, p in tokenizer.named_parameters() if not p.requires_grad and n in missing]
            if frozen:
                raise ValueError(f"init_from {init_from}: lacks {len(frozen)} tensors that lr_scales freezes, which "
                                 f"would stay at their random initialisation: {frozen[:8]}")
            loaded = len(tokenizer.state_dict()) - len(missing)
            rank_zero_info(f"init_from {init_from}: loaded {loaded} tensors; missing (kept as initialised) "
                           f"{len(missing)} {missing[:8]}; unexpected (ignored) {len(unexpected)} {unexpected[:8]}")
            if init_discriminators:
                from vistok.trainers.init_from import load_discriminator_weights

                found = load_discriminator_weights({"discriminator": discriminator,
                                                    "video_discriminator": video_discriminator}, init_from)
                for name, (n, missing, unexpected) in found.items():
                    rank_zero_info(f"init_from {init_from}: {name} loaded {n} tensors; missing (kept as initialised) "
                                   f"{len(missing)} {missing[:8]}; unexpected (ignored) {len(unexpected)} "
                                   f"{unexpected[:8]}")
        self.discriminator = discriminator
        self.video_discriminator = video_discriminator
        adversarial = discriminator is not None or video_discriminator is not None
        # Plain values only: the checkpoint is read back with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["tokenizer", "discriminator", "video_discriminator", "gan", "perceptual",
                                          "proxy_codes"])
        self.hparams["gan"] = asdict(gan) if gan is not None else None
        self.hparams["perceptual"] = asdict(perceptual) if perceptual is not None else None
        self.hparams["proxy_codes"] = asdict(proxy_codes) if proxy_codes is not None else None
        self.loss_weights = resolve_weights(loss_weights)
        check_terms(loss_weights, tokenizer, proxy_codes is not None)
        self.proxy_target = None
        if proxy_codes is not None:
            if adversarial or perceptual is not None:
                raise ValueError("proxy_codes (TiTok stage 1) decodes no pixels in training: it takes no "
                                 "discriminator and no perceptual loss (those are stage 2's)")
            from vistok.trainers.proxy_codes import build_target

            self.proxy_target = build_target(proxy_codes, tokenizer)  # also freezes the head's conv decoder
        self.adversarial = AdversarialLoss(gan or GANSettings()) if adversarial else None
        if self.adversarial is not None:
            check_discriminators(discriminator, video_discriminator, self.adversarial.settings)
        self.perceptual, self.perceptual_kind = build_perceptual(perceptual)
        self.perceptual_weight = perceptual.weight if perceptual is not None else 0.0
        needs_pixels = [what for what, on in (("a discriminator", adversarial),
                                             ("a perceptual loss", self.perceptual is not None)) if on]
        if needs_pixels and generative(tokenizer):
            raise ValueError(f"{' and '.join(needs_pixels)} need(s) a reconstruction in training; "
                             f"{type(tokenizer.decoder).__name__} trains on its own objective and returns none")
        self.automatic_optimization = not adversarial
        self._clip: tuple[float, str | None] | None = None
        self._accumulate = 1  # batches per step under manual optimisation (taken over from the trainer)
        self._batches_in_step = 0
        self._d_losses: list[torch.Tensor] = []
        self._rng: TrainingRNG | None = None
        self._rng_to_load: list[dict[str, Any]] | None = None

    def _step(self, batch: dict[str, Any], stage: str, after_forward: Callable[[torch.Tensor, Any], None] | None = None
              ) -> tuple[torch.Tensor, Any]:
        """(the weighted loss, the model's output). `after_forward(x, out)` runs between the
        forward pass and the losses (LARP's discriminator step, which the generator's adversarial term follows)."""
        if stage == "train" and self.multiresolution is not None:
            self.multiresolution.rescale(batch)  # in place: every loss sees the rescaled pixels
        x = pixels(batch)  # (B, 3, H, W) or (B, 3, T, H, W)
        if self.proxy_target is not None:  # TiTok stage 1: proxy-code cross-entropy, no pixels
            from vistok.trainers.proxy_codes import proxy_code_forward

            out = proxy_code_forward(self.tokenizer, self.proxy_target, x)
        else:
            out = self.tokenizer(x)
        if after_forward is not None:
            after_forward(x, out)
        w = self.loss_weights
        terms = dict(out.losses)  # quantizer, and flow / prior when the model has them; unweighted
        if out.recon is not None:
            terms.update(pixel_terms(out.recon, x, w))
        # The weighted reconstruction (pixel terms, or a generative decoder's objective): logged as `recon` /
        # `flow`, and what the adaptive GAN weight balances against.
        rec = sum(w[k] * v for k, v in terms.items() if k in PIXEL_TERMS or k == "flow")
        if stage == "train":
            terms.update(self._training_terms(x, out.recon, rec))  # weighted in their settings: weight 1 here
            check_losses(terms, self.global_step, self._last_checkpoint())  # names the first non-finite term
        loss = sum(w.get(k, 1.0) * v for k, v in terms.items())
        b = x.shape[0]
        on_step = stage == "train"
        sync = not on_step  # epoch-level (validation) figures are averaged over processes; per-step ones are not
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=b, on_step=on_step, on_epoch=not on_step,
                 sync_dist=sync)
        if out.recon is not None:
            self.log(f"{stage}/recon", rec, batch_size=b, on_step=on_step, on_epoch=not on_step, sync_dist=sync)
        for name, value in terms.items():  # every term under its own name, unweighted (as its weight scales it)
            self.log(f"{stage}/{name}", value, batch_size=b, on_step=on_step, on_epoch=not on_step, sync_dist=sync)
        if out.recon is not None:
            self.log(f"{stage}/psnr", per_image_psnr(out.recon, x).mean(), prog_bar=True, batch_size=b, on_step=on_step,
                     on_epoch=not on_step, sync_dist=sync)
        for name, value in (out.quant.metrics.items() if out.quant is not None else ()):  # a VAE has no quantizer
            self.log(f"{stage}/q_{name}", value, batch_size=b, on_step=on_step, on_epoch=not on_step, sync_dist=sync)
        # Logged on every batch, 0 included: a synced key must be logged by every rank, or the reduction waits.
        self.log(f"{stage}/skipped", float(batch.get("skipped", 0)), reduce_fx="sum", on_step=False, on_epoch=True,
                 batch_size=b, sync_dist=True)
        return loss, out

    def _training_terms(self, x: torch.Tensor, recon: torch.Tensor | None,
                        rec: torch.Tensor) -> dict[str, torch.Tensor]:
        """The perceptual and adversarial terms of the generator's loss, weighted by their own settings."""
        terms: dict[str, torch.Tensor] = {}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual_weight * self.perceptual(frames(recon), frames(x))  # clips: per frame
        step, b = self.global_step, x.shape[0]
        if self.adversarial is not None:
            gan, logs = self.adversarial.generator_term(self.discriminator, self.video_discriminator, x, recon,
                                                        rec + terms.get("perceptual", 0), self.tokenizer.decoder, step)
            terms.update(gan)  # gan_g, gan_fm
            self._log_all(logs, b)
        return terms

    def _log_all(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for name, value in values.items():
            self.log(f"train/{name}", value, batch_size=batch_size, on_step=True, on_epoch=False)

    def _last_checkpoint(self) -> str | None:
        cb = self.trainer.checkpoint_callback if self._trainer is not None else None
        return getattr(cb, "last_model_path", None) or None

    def _all_skipped(self, batch: dict[str, Any], stage: str) -> bool:
        """Every image of the batch failed to load (collate_images dropped them): count them, skip the step."""
        if len(pixels(batch)):
            return False
        self.log(f"{stage}/skipped", float(batch.get("skipped", 0)), reduce_fx="sum", on_step=False, on_epoch=True,
                 batch_size=1, sync_dist=True)
        return True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self._all_skipped(batch, "train"):
            return None  # Lightning skips the optimizer step
        if self.automatic_optimization:
            return self._step(batch, "train")[0]
        return self._adversarial_step(batch)

    def _adversarial_step(self, batch: dict[str, Any]) -> torch.Tensor:
        """One generator step (counted by Lightning) and, on the discriminators' cadence, one discriminator step
        on the same detached reconstructions (not counted: taken through the strategy, not the
        LightningOptimizer): after the generator's step (`gan.order: generator_first`) or before its losses
        (`discriminator_first`). With `trainer.accumulate_grad_batches` N, both sides sum the gradients of N
        batches (each loss / N) and step on the N-th."""
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        step = self.global_step  # generator steps done so far
        n = self._accumulate
        self._batches_in_step += 1
        last = self._batches_in_step % n == 0
        settings = self.adversarial.settings

        def discriminator_phase(x: torch.Tensor, out: Any) -> None:
            d_loss, logs = self.adversarial.discriminator_term(self.discriminator, self.video_discriminator, x,
                                                               out.recon, step)
            if d_loss is not None:
                check_losses({"gan_d": d_loss}, step, self._last_checkpoint())
                self.manual_backward(d_loss / n)
                self._d_losses.append(d_loss.detach())
                self._log_all(logs, x.shape[0])
            if last and self.adversarial.on_cadence(step):
                self._discriminator_update(opt_d, sched_d)

        first = settings.order == "discriminator_first"
        loss, out = self._step(batch, "train", after_forward=discriminator_phase if first else None)
        # The generator's adversarial backward goes through D(G(z)) into D's parameters: those gradients are
        # not D's to use; D's own (accumulating over the step's batches) are set aside meanwhile.
        held = [(p, p.grad) for d in self._discriminators() for p in d.parameters()]
        for p, _ in held:
            p.grad = None
        self.manual_backward(loss / n)
        for p, grad in held:
            p.grad = grad
        if last:
            self._clip_gradients(opt_g)
            opt_g.step()
            sched_g.step()
            opt_g.zero_grad()
        if not first:
            discriminator_phase(pixels(batch), out)  # the batch as `_step` saw it (rescaled there, in place)
        return loss

    def _discriminator_update(self, opt_d: Any, sched_d: Any) -> None:
        """The discriminators' step at the end of a generator step on their cadence, unless no batch of it
        gave them a loss or (`gan.skip_below`) their loss, averaged over the step's batches and the processes
        (every process takes the same decision), is below the threshold. Their schedule advances either way,
        as OmniTokenizer's, so their k-th cadence step takes the factor of generator step first + k * every."""
        losses, self._d_losses = self._d_losses, []
        threshold = self.adversarial.settings.skip_below
        skip = False
        if threshold is not None:
            # (sum, count) over every process, reduced by each of them whether or not its batches gave a loss
            stats = torch.stack([torch.stack(losses).sum() if losses else torch.zeros((), device=self.device),
                                 torch.tensor(float(len(losses)), device=self.device)])
            total, count = self.trainer.strategy.reduce(stats.float(), reduce_op="sum").tolist()
            skip = count > 0 and total / count < threshold
            if count > 0:
                self.log("train/gan_d_skipped", float(skip), batch_size=1, on_step=True, on_epoch=False)
        if losses and not skip:
            self._clip_gradients(opt_d)
            self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=_no_closure)
        opt_d.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step: torch warns of a step before the optimizer's
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            sched_d.step()

    def _clip_gradients(self, optimizer: Any) -> None:
        if self._clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self._clip[0], gradient_clip_algorithm=self._clip[1])

    def configure_callbacks(self) -> list[pl.Callback]:
        # Called by the trainer before it validates its settings: under manual optimisation Lightning refuses a
        # trainer-level gradient_clip_val (it cannot know where the steps are), so take the value over here and
        # clip each optimizer in `_adversarial_step`; configs keep one place for it.
        # Gradient accumulation likewise: Lightning refuses it under manual optimisation; `_adversarial_step` sums
        # the batches itself (OmniTokenizer's stages 2 and 3 accumulate 2: an image and a clip batch per step).
        trainer = self.trainer
        if not self.automatic_optimization and trainer.gradient_clip_val:
            algorithm = trainer.gradient_clip_algorithm
            self._clip = (float(trainer.gradient_clip_val), str(getattr(algorithm, "value", algorithm) or "norm"))
            trainer.gradient_clip_val = None
        if not self.automatic_optimization and trainer.accumulate_grad_batches != 1:
            self._accumulate = int(trainer.accumulate_grad_batches)
            trainer.accumulate_grad_batches = 1
        return []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        if self._all_skipped(batch, "val"):
            return None
        _, out = self._step(batch, "val")
        if isinstance(self.tokenizer, KLAutoencoder):
            return None  # no tokens: no prefixes, no codebook
        indices = out.quant.indices
        if self.tokenizer.token_dropout is not None:
            # Quality per prefix length: the point of a flexible-length tokenizer.
            x = pixels(batch)
            for k, recon in prefix_reconstructions(self.tokenizer, x):
                self.log(f"val/psnr_k{k}", per_image_psnr(recon, x).mean(), batch_size=x.shape[0], sync_dist=True)
        return {"indices": indices}  # (B, N), for the CodebookUsage callback

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = tokenizer_optimizer(self.tokenizer, hp.lr, hp.weight_decay, tuple(hp.betas), hp.lr_scales)
        total = int(self.trainer.estimated_stepping_batches)
        if self._accumulate > 1 and self.trainer.max_steps < 0:  # counted in batches: the system accumulates
            total //= self._accumulate
        total = max(1, total)
        warmup = warmup_steps(hp.warmup, total)

        def schedule(s: int) -> float:
            return warmup_cosine(s, total, warmup, hp.min_lr_ratio, hp.warmup_start)

        sched = LambdaLR(opt, schedule)
        if self.adversarial is None:
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        g = self.adversarial.settings
        opt_d = discriminator_optimizer(self._discriminators(), g, hp.lr, hp.weight_decay, tuple(hp.betas))
        # The discriminators' schedule advances once per cadence step (every `gan.every` generator steps from the
        # start step on): its k-th takes the factor of generator step first + k * every, so both sides follow one
        # schedule of generator steps; with its own warm-up when `gan.warmup` says so.
        d_warmup = warmup if g.warmup is None else warmup_steps(g.warmup, total)
        first, every = self.adversarial.first_step(), g.every
        sched_d = LambdaLR(opt_d, lambda k: warmup_cosine(first + k * every, total, d_warmup, hp.min_lr_ratio,
                                                                hp.warmup_start))
        return ([opt, opt_d], [{"scheduler": sched, "interval": "step"}, {"scheduler": sched_d, "interval": "step"}])

    # --- processes: model code was built before the process group existed -----------------------------------
    def setup(self, stage: str) -> None:
        sync_quantizers(self.tokenizer, is_multiprocess())  # VQ codebook statistics all-reduced across ranks
        for disc in self._discriminators():  # their BatchNorm normalises over the global batch, as the tokenizer's
            sync_quantizers(disc, is_multiprocess())
        if self.adversarial is not None and self._trainer is not None and allow_partial_backward(self.trainer):
            rank_zero_info("adversarial training under DDP: find_unused_parameters switched on (two backward "
                           "passes per batch, each through part of the model)")
        self._idle_video_weights()

    def _idle_video_weights(self) -> None:
        """A grid video tokenizer's later-frame weights and what the data reaches: trained on images only
        (OmniTokenizer's stage 1) no step touches them, so they are frozen before DDP wraps the model (they
        would stay as initialised anyway: AdamW skips a parameter without a gradient); trained on images and
        clips in turn (stage 2), image steps leave them idle and DDP must look for unused parameters."""
        kinds = getattr(self.trainer.datamodule, "batch_kinds", None) if self._trainer is not None else None
        idle = video_only_parameters(self.tokenizer)
        if not kinds or not idle or "image" not in kinds:
            return
        if "video" not in kinds:
            for p in idle:
                p.requires_grad_(False)
            rank_zero_info(f"image-only training: the {sum(p.numel() for p in idle)} later-frame weights of the "
                           "video patch embeddings and heads get no gradient and are frozen")
        elif allow_partial_backward(self.trainer, "joint image + video training"):
            rank_zero_info("joint image + video training under DDP: find_unused_parameters switched on (image "
                           "batches do not reach the later-frame patch embeddings and heads)")

    def teardown(self, stage: str) -> None:
        sync_quantizers(self.tokenizer, False)
        for disc in self._discriminators():
            sync_quantizers(disc, False)

    def _discriminators(self) -> list[nn.Module]:
        return [d for d in (self.discriminator, self.video_discriminator) if d is not None]

    # --- random state: seeded at the start of fit, saved per rank in every checkpoint, restored on resume ------
    def on_train_start(self) -> None:
        self._batches_in_step, self._d_losses = 0, []  # a resumed run starts at a step boundary

    def on_fit_start(self) -> None:
        # After the checkpoint's weights and the model's device are in place, before the sanity check.
        check_weight_averaging(self.trainer, self)
        # The tokenizer's generators keep their own names (older checkpoints resume); the discriminators' (their
        # input noise) are saved as "discriminator.<name>" / "video_discriminator.<name>", the multi-resolution
        # draw's as "system.multiresolution".
        self._rng = TrainingRNG(self.tokenizer, {"discriminator": self.discriminator,
                                                 "video_discriminator": self.video_discriminator,
                                                 "system.multiresolution": self.multiresolution})
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
        if self.adversarial is not None and "vistok_adversarial" in checkpoint:
            self.adversarial.load_state_dict(checkpoint["vistok_adversarial"])

    def training_record(self) -> dict[str, Any]:
        """The losses this system trains with, for the checkpoint, the export and `vistok eval` (which says
        when rFID's own Inception network was a training loss)."""
        w = self.loss_weights
        rec = ({"kind": "flow"} if generative(self.tokenizer) else
               {"kind": "proxy_codes", "weight": w["proxy_codes"], **self.hparams["proxy_codes"]}
               if self.proxy_target is not None else
               {"kind": "pixel", "l1": w["l1"], "l2": w["l2"], "colour": w["colour"]})
        adv = None
        if self.adversarial is not None:
            adv = {**asdict(self.adversarial.settings),
                   "discriminator": None if self.discriminator is None else to_config(self.discriminator),
                   "video_discriminator": (None if self.video_discriminator is None
                                           else to_config(self.video_discriminator))}
        vae = isinstance(self.tokenizer, KLAutoencoder)
        return {"reconstruction": rec, "quantizer_weight": None if vae else w["quantizer"],
                **({"kl_weight": w["kl"]} if vae else {}), "loss_weights": dict(w),
                "perceptual": ({"kind": self.perceptual_kind, "weight": self.perceptual_weight}
                               if self.perceptual is not None else None),
                "adversarial": adv}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        step = int(checkpoint.get("global_step", self.global_step))
        for key in ("state_dict", "current_model_state"):  # the weights saved (EMA) and the ones trained
            if key in checkpoint:
                check_weights(checkpoint[key], step)
        # Lets `vistok export` rebuild the tokenizer from the checkpoint with no config file and no pickle.
        checkpoint["vistok_config"] = to_config(self.tokenizer)
        checkpoint["vistok_training"] = self.training_record()
        if self.adversarial is not None:
            checkpoint["vistok_adversarial"] = self.adversarial.state_dict()
        if self._rng is not None:  # every rank builds the checkpoint, rank 0 writes it: gather each rank's state
            state = self._rng.state()
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                states: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(states, state)
            else:
                states = [state]
            checkpoint["vistok_rng"] = states


def _no_closure() -> None:
    return None
