"""`TokenizerOutput`: what a training forward returns, for every model the training system takes (a `Tokenizer`,
the VAE of `vistok.decoders.kl_vae`). Its own module, below both, so neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vistok.quantizers.base import QuantizerOutput


@dataclass
class TokenizerOutput:
    recon: torch.Tensor | None  # (B, C, H, W) raw decoder output; None from a generative decoder in training
    quant: QuantizerOutput | None  # codes/indices for all N tokens; None from a VAE (vistok.decoders.kl_vae)
    valid: torch.Tensor | None  # (B, K) tokens the decoder saw, None if all of them
    # The loss terms the model itself produces, unweighted (`vistok.trainers.losses`): "quantizer" (or "kl" from a
    # KL bottleneck or the VAE), "flow" from a generative decoder's own objective, "prior" from an AR prior (LARP).
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
