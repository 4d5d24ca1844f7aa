"""LARP's autoregressive-prior objective as a pure function: the next-token cross-entropy of a causal prior
(`vistok.nn.prior.CodePrior`) over a tokenizer's codes. `Tokenizer(prior=...)` adds it to its output in
training (the loss term "prior" of `TokenizerOutput.losses`); the training system weighs it (`loss_weights`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ar_prior_loss(prior: nn.Module, codes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """codes (B, N, d) (straight-through: the loss reaches the encoder), indices (B, N) int64 -> scalar mean
    cross-entropy in fp32 of predicting token i from tokens < i."""
    logits = prior(codes)  # (B, N, V)
    return F.cross_entropy(logits.float().flatten(0, 1), indices.flatten())
