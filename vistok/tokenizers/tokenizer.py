"""`Tokenizer`: encoder -> quantizer -> (token dropout) -> decoder, with the user-facing encode/decode API.

Plain `nn.Module`; training objectives live in `vistok.trainers`, saving and loading in `vistok.saving` and
`vistok.loading`.

One source of truth: the encoder's `input_spec` (channels, frames rule, height, width), `num_tokens` and
`token_dim` are the tokenizer's; the constructor refuses a quantizer, decoder or token dropout that disagrees,
naming both sides. Inputs are checked against `input_spec` in one place (`check_images`, and the shape part of
it in `forward`).

Videos: a model whose `input_spec` has a frames rule other than "1" takes (B, C, T, H, W) and decodes to that
shape; when the rule allows T = 1, an image (B, C, H, W) is taken as a one-frame video (and `forward` returns
its reconstruction as an image). A space-time grid encoder (`token_grid` of 3 numbers, e.g.
`vistok.tokenizers.omni`) gives T' x h x w tokens, time-major, their number following T; its ids decode in whole
latent frames, and `chunk=` encodes/decodes long clips a few latent frames at a time (`vistok.tokenizers.chunked`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.input_spec import InputSpec
from vistok.model_output import TokenizerOutput
from vistok.quantizers.base import Quantizer
from vistok.tokenizers.encoder import Encoder


def _check_sampling(steps: Any, guidance_scale: Any, seed: Any) -> None:
    """Sampler arguments of `decode` (None: the decoder's default)."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if guidance_scale is not None and (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real)
                                       or not math.isfinite(guidance_scale)):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer, got {seed!r}")


_ZERO_ONE_WARNED = False


def _warn_zero_one(lo: float, hi: float) -> None:
    """Once per process: a batch with no negative pixel is most likely in [0, 1], which passes the range check
    but encodes as a washed-out image."""
    global _ZERO_ONE_WARNED
    if _ZERO_ONE_WARNED:
        return
    _ZERO_ONE_WARNED = True
    warnings.warn(f"images have no negative values (range [{lo:.3g}, {hi:.3g}]): vistok expects pixels in [-1, 1], "
                  "and [0, 1] (TiTok's and ToTensor's convention) is likely here; convert with x * 2 - 1, or load "
                  "files with vistok.load_images(paths, tok.image_size). Shown once.", UserWarning, stacklevel=4)


def _check_parts(encoder: Encoder, quantizer: Quantizer, decoder: Decoder,
                 token_dropout: nn.Module | None) -> None:
    """Each part keeps its contract (`Encoder`, `Quantizer`, `Decoder`), and they agree on N, the token dimension
    and the image; each error names both sides (a TailDrop(16) in an N = 32 tokenizer would otherwise never
    train the tail)."""
    for name, part, contract in (("encoder", encoder, Encoder), ("quantizer", quantizer, Quantizer),
                                 ("decoder", decoder, Decoder)):
        if not isinstance(part, contract):
            raise TypeError(f"the {name} ({type(part).__name__}) must subclass {contract.__module__}."
                            f"{contract.__name__}")
    n, d = encoder.num_tokens, encoder.token_dim
    if d != quantizer.dim:
        raise ValueError(f"encoder.token_dim ({d}) must equal quantizer.dim ({quantizer.dim})")
    pairs = [("decoder.num_tokens", decoder.num_tokens, "encoder.num_tokens", n),  # None: a grid takes any
             ("decoder.token_dim", decoder.token_dim, "encoder.token_dim", d)]
    if token_dropout is not None:
        pairs.append(("token_dropout.num_tokens", token_dropout.num_tokens, "encoder.num_tokens", n))
    linear = decoder.linear_path
    if linear is not None:  # a whole-image path sizes its tokens (a per-patch one follows the decoder's grid)
        pairs += [("decoder.linear_path.num_tokens", getattr(linear, "num_tokens", None), "encoder.num_tokens", n),
                  ("decoder.linear_path.token_dim", getattr(linear, "token_dim", None), "encoder.token_dim", d)]
    for name, value, other, want in pairs:
        if value is not None and value != want:
            raise ValueError(f"{name} ({value}) must equal {other} ({want})")
    spec, out = encoder.input_spec, decoder.output_spec
    if out != spec:
        raise ValueError(f"the decoder's output {out.shape_text()} (decoder image_size / channels) must equal the "
                         f"encoder's input {spec.shape_text()} (encoder image_size / channels)")


@configurable
class Tokenizer(nn.Module):
    def __init__(
        self,
        encoder: Encoder,
        quantizer: Quantizer,
        decoder: Decoder,
        token_dropout: nn.Module | None = None,
        prior: nn.Module | None = None,
    ) -> None:
        """`prior`: an optional causal prior over the codes (`vistok.nn.prior.CodePrior`, LARP) whose
        next-token loss `forward` reports as the loss term "prior"."""
        super().__init__()
        _check_parts(encoder, quantizer, decoder, token_dropout)
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.token_dropout = token_dropout
        self.prior = prior

    # --- facts a user needs ------------------------------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        """What `encode` and `forward` take: channels, frames rule, height, width (the encoder's)."""
        return self.encoder.input_spec

    @property
    def image_size(self) -> int:
        """The side of a square image model (compatibility; `input_spec` describes every model)."""
        spec = self.input_spec
        if spec.is_video or not spec.is_square:
            raise ValueError(f"image_size is defined for square image models only; this one takes "
                             f"{spec.shape_text()}: read tok.input_spec")
        return spec.height

    @property
    def max_tokens(self) -> int:
        return self.encoder.num_tokens

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def frame_tokens(self) -> int | None:
        """Tokens per latent frame of a space-time grid tokenizer; None for 1D tokenizers."""
        return self.encoder.tokens_per_frame

    def token_grid(self, frames: int | None = None) -> tuple[int, ...]:
        """The token layout: (T', h, w) of a clip of `frames` frames for a space-time grid tokenizer (default: the
        clip length it was built for), (N,) for a 1D one."""
        return tuple(self.encoder.token_grid(frames))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- training ----------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """Training: images as `input_spec` says (B, C, H, W) -> reconstruction, codes, token validity. Another
        height and width where `size_refusal` allows it (multi-resolution training)."""
        image_in = self._image_as_video(images)
        if image_in:
            images = images.unsqueeze(2)  # (B, C, 1, H, W)
        spec, size = self.input_spec, tuple(images.shape[-2:])
        other = images.ndim >= 4 and size != spec.size  # multi-resolution training, where the parts take the size
        if other:
            why = self.size_refusal(*size)
            if why:
                raise ValueError(f"{'videos' if spec.is_video else 'images'} must have shape {spec.shape_text()}, "
                                 f"got {tuple(images.shape)} ({why})")
            spec = dataclasses.replace(spec, height=size[0], width=size[1])
        spec.check(images)  # shape only: no device sync per step
        quant = self.quantizer(self.encoder(images))  # codes (B, N, d)
        losses = {self.quantizer.loss_name: quant.loss}  # "quantizer", or "kl" from a continuous bottleneck
        if self.prior is not None:
            from vistok.tokenizers.ar_prior import ar_prior_loss

            losses["prior"] = ar_prior_loss(self.prior, quant.codes, quant.indices, self.quantizer)
        codes, valid = quant.codes, None
        if self.token_dropout is not None:
            codes, valid = self.token_dropout(codes)  # (B, K, d), (B, K) | None
        if self.decoder.generative:  # a generative decoder trains on its own objective
            losses["flow"], recon = self.decoder.training_loss(codes, valid, images)
            return TokenizerOutput(recon, quant, valid, losses)
        recon = self.decoder(codes, valid, size=size) if other else self.decoder(codes, valid)
        return TokenizerOutput(recon.squeeze(2) if image_in else recon, quant, valid, losses)

    def size_refusal(self, height: int, width: int) -> str | None:
        """Why `forward` cannot train on frames of height x width instead of `input_spec`'s (None: it can).
        Only parts that say so take other sizes (`size_refusal`; OmniTokenizer's official network with RoPE,
        for its multi-resolution training, `vistok.trainers.multiresolution`); encode/decode keep `input_spec`."""
        spec = self.input_spec
        if (height, width) == spec.size:
            return None
        for name, part in (("encoder", self.encoder), ("decoder", self.decoder)):
            refusal = getattr(part, "size_refusal", None)
            why = (refusal(height, width) if refusal is not None else
                   f"the {name} ({type(part).__name__}) takes {spec.height} x {spec.width} frames only")
            if why:
                return why
        for name in ("token_dropout", "prior"):  # built for the nominal number of tokens
            if getattr(self, name) is not None:
                return f"the {name} is built for {self.max_tokens} tokens ({spec.height} x {spec.width} frames)"
        return None

    def _image_as_video(self, images: Any) -> bool:
        """A 4-D image batch given to a video model whose frames rule allows one frame."""
        spec = self.input_spec
        return spec.is_video and spec.frames_ok(1) and len(getattr(images, "shape", ())) == 4

    # --- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | None = None, chunk: int | None = None) -> torch.Tensor:
        """images (B, 3, H, W) (or videos (B, 3, T, H, W), as `input_spec` says) float in [-1, 1] -> int64 ids
        (B, K), K = num_tokens or all of them (max_tokens; T' * h * w for a space-time grid tokenizer, where
        num_tokens must be whole latent frames and only the frames they need are encoded). `chunk`: encode a
        long clip `chunk` latent frames at a time (grid tokenizers; same ids as a whole encode).

        Pixels are in [-1, 1] (`x_uint8 / 127.5 - 1`), not [0, 1] (TiTok's and `ToTensor`'s convention: use
        `x * 2 - 1`), at exactly the height and width of `input_spec`. `vistok.load_images(paths,
        tok.image_size)` loads files, PIL images or uint8 arrays, resized and cropped as the CLI does, in this
        range. A batch with no
        negative value at all but values in [0, 1] gives a warning (once per process)."""
        self._require_ids("encode")
        if self.frame_tokens is None:
            if chunk is not None:
                raise ValueError("chunk is for space-time grid (causal video) tokenizers; this one gives 1D tokens")
            k = self._check_length(self.max_tokens if num_tokens is None else num_tokens)
            z = self.encoder(self.check_images(images))
            return self.quantizer(z).indices[:, :k]  # (B, K)
        x = self.check_images(images)  # (B, C, T, H, W)
        total = self.token_grid(x.shape[2])[0] * self.frame_tokens
        k = total if num_tokens is None else self._check_length(num_tokens, total)
        if not getattr(self.encoder, "causal_in_time", True):  # later frames move earlier tokens: encode them all
            if chunk is not None:
                from vistok.tokenizers.chunked import check_chunk

                check_chunk(chunk, self.encoder)  # refuses, saying why
            return self.quantizer(self.encoder(x)).indices[:, :k]
        x = x[:, :, : 1 + self.encoder.temporal_patch * (k // self.frame_tokens - 1)]  # causal: frames it needs
        if chunk is not None:
            from vistok.tokenizers.chunked import encode_chunked

            return encode_chunked(self.encoder, x, chunk, lambda z: self.quantizer(z).indices)  # (B, K)
        return self.quantizer(self.encoder(x)).indices  # (B, K), time-major

    def check_images(self, images: Any) -> torch.Tensor:
        """The one check of user images: returns float32 (B, C, H, W) on the model's device, or raises a
        ValueError naming the problem. A torch tensor or numpy array of float16/bfloat16/float32/float64 is
        accepted (converted to float32); integer, bool or complex pixels, NaN/inf, a shape other than
        `input_spec`'s or values outside [-1, 1] are refused."""
        shape = self.input_spec.shape_text()
        if isinstance(images, np.ndarray):
            if images.dtype.kind != "f":
                raise ValueError(f"images must be floats in [-1, 1], got a numpy array of {images.dtype}"
                                 + (" (for uint8 pixels use x / 127.5 - 1)" if images.dtype.kind in "ui" else ""))
            images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a float tensor {shape} in [-1, 1], got {type(images).__name__}")
        if not images.is_floating_point():
            raise ValueError(f"images must be a float tensor {shape} in [-1, 1], got {images.dtype}"
                             + (" (for uint8 pixels use x / 127.5 - 1)" if images.dtype == torch.uint8 else ""))
        if self._image_as_video(images):
            images = images.unsqueeze(2)  # an image is a one-frame video
        self.input_spec.check(images)
        images = images.to(self.device, torch.float32)
        if images.numel():
            bad = int((~torch.isfinite(images)).sum())
            if bad:
                raise ValueError(f"images contain {bad} NaN or infinite values (of {images.numel()})")
            lo, hi = float(images.min()), float(images.max())
            if lo < -1.05 or hi > 1.05:
                raise ValueError(
                    f"images must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}] "
                    "(for uint8 pixels use x / 127.5 - 1)"
                )
            if lo >= 0:
                _warn_zero_one(lo, hi)
        return images

    def encode_adaptive(self, images: torch.Tensor, target_psnr: float):
        """One 1-D id tensor per image: the shortest prefix whose reconstruction reaches `target_psnr` dB.

        Returns an `AdaptiveEncoding` (iterable like a list of tensors) with `.lengths`, `.psnr`,
        `.unreachable` (images that get all N tokens and still miss the target) and `.histogram()`."""
        from vistok.tokenizers.adaptive import encode_adaptive

        return encode_adaptive(self, images, target_psnr)

    @torch.no_grad()
    def decode(
        self,
        ids: torch.Tensor | Sequence[torch.Tensor],
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """int64 ids (B, K) with 1 <= K <= N, or a sequence of 1-D id tensors of different lengths (a list, a
        tuple, the `AdaptiveEncoding` of `encode_adaptive`, any iterable) -> images (B, 3, H, W) in [-1, 1]
        (videos (B, 3, T, H, W) for a video model; a grid tokenizer takes whole latent frames, any number of
        them, and `chunk` decodes `chunk` latent frames at a time). `steps`, `guidance_scale`, `seed` drive a
        generative decoder's sampler and are ignored by a pixel decoder."""
        self._require_ids("decode")
        _check_sampling(steps, guidance_scale, seed)
        ids, valid = self._batch_ids(ids)
        codes = self.quantizer.indices_to_codes(ids.to(self.device)).float()  # (B, K, d)
        if chunk is not None:
            if self.frame_tokens is None or valid is not None:
                raise ValueError("chunk is for space-time grid (causal video) tokenizers with whole latent frames")
            from vistok.tokenizers.chunked import decode_chunked

            return decode_chunked(self.decoder, codes, chunk).clamp_(-1, 1)  # in place: a long clip is large
        sampling = {k: v for k, v in dict(steps=steps, guidance_scale=guidance_scale, seed=seed).items()
                    if v is not None}
        valid = None if valid is None else valid.to(self.device)
        return self.decoder.reconstruct(codes, valid, **sampling).clamp_(-1, 1)

    @property
    def continuous(self) -> bool:
        """True when the bottleneck is continuous (a KL / VAE bottleneck, `vistok.quantizers.gaussian`): latents,
        no token ids."""
        return bool(getattr(self.quantizer, "continuous", False))

    def _require_ids(self, what: str) -> None:
        if self.continuous:
            raise ValueError(f"{what}: this tokenizer has a continuous KL bottleneck "
                             f"({type(self.quantizer).__name__}) and no token ids; use encode_latents / "
                             "decode_latents")

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """images (as `encode` takes them) -> the (B, N, d) float32 vectors the decoder reads: a continuous
        bottleneck's posterior mean, or a quantizer's code vectors (what `decode` looks its ids up as)."""
        z = self.encoder(self.check_images(images))
        posterior = getattr(self.quantizer, "posterior", None)
        if posterior is not None:
            with torch.autocast(device_type=z.device.type, enabled=False):
                return posterior(z.float())[0]
        return self.quantizer(z).codes

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, steps: int | None = None, guidance_scale: float | None = None,
                       seed: int | None = None) -> torch.Tensor:
        """(B, N, d) latents from `encode_latents` -> pixels in [-1, 1], as `decode` returns them."""
        _check_sampling(steps, guidance_scale, seed)
        d = self.quantizer.dim
        if not isinstance(latents, torch.Tensor) or latents.ndim != 3 or latents.shape[-1] != d \
                or not latents.is_floating_point():
            raise ValueError(f"latents must be a float tensor (B, N, {d}), got "
                             f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
        self._check_length(int(latents.shape[1]))  # 1..N, or whole latent frames of a grid tokenizer
        sampling = {k: v for k, v in dict(steps=steps, guidance_scale=guidance_scale, seed=seed).items()
                    if v is not None}
        return self.decoder.reconstruct(latents.to(self.device, torch.float32), None, **sampling).clamp(-1, 1)

    def _check_length(self, k: int, total: int | None = None) -> int:
        """1..max_tokens for a 1D tokenizer; for a grid tokenizer whole latent frames (of `frame_tokens`), up to
        `total` when given (the ids of the clip being encoded)."""
        per = self.frame_tokens
        if per is None:
            if not isinstance(k, int) or not 1 <= k <= self.max_tokens:
                raise ValueError(f"number of tokens must be in 1..{self.max_tokens}, got {k}")
            return k
        if isinstance(k, bool) or not isinstance(k, int) or k < per or k % per or (total is not None and k > total):
            upto = f" up to {total}" if total is not None else ""
            raise ValueError(f"number of tokens must be whole latent frames: a multiple of {per} (h x w = "
                             f"{' x '.join(map(str, self.token_grid()[1:]))}){upto}, got {k}")
        return k

    def _batch_ids(self, ids: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate ids; a sequence of 1-D tensors (a list, a tuple, an `AdaptiveEncoding`, any iterable that is
        not itself a tensor) becomes a padded (B, K_max) batch and a (B, K_max) mask."""
        if isinstance(ids, np.ndarray):
            if ids.dtype.kind not in "iu":
                raise ValueError(f"token ids must be integers, got a numpy array of {ids.dtype}")
            ids = torch.from_numpy(ids.astype(np.int64))
        if not isinstance(ids, (torch.Tensor, str, bytes)) and hasattr(ids, "__iter__"):
            seqs = [torch.as_tensor(t) for t in ids]
            if not seqs:
                raise ValueError("decode got an empty list of token sequences")
            for i, t in enumerate(seqs):
                if t.ndim != 1:
                    raise ValueError(f"sequence {i} must be 1-D, got shape {tuple(t.shape)}")
                self._check_length(int(t.numel()))
                self.quantizer.check_indices(t)
            k = max(int(t.numel()) for t in seqs)
            if self.frame_tokens is not None and any(int(t.numel()) != k for t in seqs):
                raise ValueError("a grid tokenizer decodes sequences of one length per batch (one clip length); got "
                                 f"lengths {sorted({int(t.numel()) for t in seqs})}")
            batch = torch.zeros(len(seqs), k, dtype=torch.long)
            valid = torch.zeros(len(seqs), k, dtype=torch.bool)
            for i, t in enumerate(seqs):
                batch[i, : t.numel()] = t.long()
                valid[i, : t.numel()] = True
            return batch, (None if bool(valid.all()) else valid)
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
            raise ValueError(f"token ids must be an int64 tensor (B, K) or a sequence of 1-D tensors, got "
                             f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
        self._check_length(int(ids.shape[1]))
        self.quantizer.check_indices(ids)
        return ids.long(), None

    # --- export ------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, overwrite: bool = False,
                        evaluation: list[dict[str, Any]] | None = None) -> Path:
        """Write an export directory atomically; a non-empty `path` is replaced only with `overwrite`.
        `evaluation`: `vistok eval` results (`vistok.metrics.protocol.load_result`) whose numbers and per-metric
        protocols the model card records."""
        from vistok.saving import save_pretrained

        return save_pretrained(self, path, overwrite=overwrite, evaluation=evaluation)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Tokenizer:
        """An export directory or a `vistok fit` .ckpt (`vistok.loading.load_tokenizer`), in eval mode."""
        from vistok.loading import load_tokenizer

        return load_tokenizer(path, map_location)
