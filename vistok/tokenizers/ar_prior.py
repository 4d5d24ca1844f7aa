"""LARP's autoregressive-prior objective as a pure function: the next-token cross-entropy of a causal prior over a
tokenizer's codes. `Tokenizer(prior=...)` adds it to its output in training (the loss term "prior" of
`TokenizerOutput.losses`); the training system weighs it (`loss_weights`; LARP's recipe: 0.06).

Two priors: `vistok.nn.prior.CodePrior` (a V-way classifier head) and `vistok.nn.prior.LARPPrior` (LARP's own: it
regresses the next code vector, logits are its cosine similarities with the codebook, two rounds with scheduled
sampling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistok.nn.prior import LARPPrior


def ar_prior_loss(prior: nn.Module, codes: torch.Tensor, indices: torch.Tensor,
                  quantizer: nn.Module | None = None) -> torch.Tensor:
    """codes (B, N, d) (straight-through: the loss reaches the encoder), indices (B, N) int64 -> scalar mean
    cross-entropy in fp32 of predicting token i from tokens < i. `quantizer`: the tokenizer's (LARPPrior reads
    its codebook)."""
    if isinstance(prior, LARPPrior):
        if quantizer is None or not hasattr(quantizer, "table"):
            raise ValueError("LARPPrior scores predictions against the codebook: it needs a quantizer with a "
                             "`table()` of codes (StochasticVQQuantizer)")
        return larp_prior_loss(prior, codes, indices, quantizer.table())
    logits = prior(codes)  # (B, N, V)
    return F.cross_entropy(logits.float().flatten(0, 1), indices.flatten())


def larp_prior_loss(prior: LARPPrior, codes: torch.Tensor, indices: torch.Tensor,
                    table: torch.Tensor) -> torch.Tensor:
    """LARP's prior loss: `prior.rounds` rounds; round 1 reads the tokenizer's codes (teacher forcing); each
    later round reads, at a share `prior.sampling_ratio()` of the positions (one draw per step, shared by the
    rounds), a code sampled from the previous round's logits instead. Mean cross-entropy of tokens 1..N-1 over
    all rounds. The codebook is read without gradient (as the official code's detached `get_emb`)."""
    table = table.detach().float()
    b, n, d = codes.shape
    labels = indices[:, 1:]
    replace = torch.rand(b, n - 1, 1, device=codes.device) < prior.sampling_ratio()
    inputs, losses = codes, []
    for r in range(prior.rounds):
        logits = prior.logits(prior(inputs), table)  # (B, N-1, V)
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), labels.flatten()))
        if r < prior.rounds - 1:
            with torch.no_grad():
                probs = F.softmax(logits.float(), dim=-1)
                sampled = torch.multinomial(probs.flatten(0, 1), 1).view(b, n - 1)
            mixed = torch.where(replace, F.embedding(sampled, table).to(codes.dtype), codes[:, 1:])
            inputs = torch.cat([codes[:, :1], mixed], dim=1)
    return torch.stack(losses).mean()
