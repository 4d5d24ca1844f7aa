"""A small causal transformer prior over a tokenizer's codes (LARP's AR prior, Wang et al. 2024).

Given the quantized codes of tokens 0..i-1 it predicts the id of token i (a learned start vector stands in
for the codes before token 0). Trained beside the tokenizer, its loss (`vistok.tokenizers.ar_prior`) flows
back through the straight-through codes into the encoder, which shapes the token sequence so that an
autoregressive generator finds it easy to predict. Departure: LARP's prior is a GPT over its stochastic VQ's
codes; ours reads any quantizer's codes (VQ or FSQ).

Shapes: codes (B, N, d) -> logits (B, N, V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.nn.blocks import Transformer


@configurable
class CodePrior(nn.Module):
    def __init__(self, token_dim: int, codebook_size: int, max_tokens: int, width: int = 256, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.token_dim, self.codebook_size, self.max_tokens = token_dim, codebook_size, max_tokens
        scale = width**-0.5
        self.proj = nn.Linear(token_dim, width)
        self.start = nn.Parameter(scale * torch.randn(1, 1, width))
        self.pos = nn.Parameter(scale * torch.randn(1, max_tokens, width))
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, N, d), N <= max_tokens -> logits (B, N, V); logits[:, i] predicts token i from codes < i."""
        b, n, _ = codes.shape
        if n > self.max_tokens:
            raise ValueError(f"the prior takes at most {self.max_tokens} tokens, got {n}")
        x = torch.cat([self.start.expand(b, -1, -1).to(codes.dtype), self.proj(codes[:, :-1])], dim=1)
        causal = torch.ones(n, n, dtype=torch.bool, device=codes.device).tril()
        return self.head(self.norm(self.transformer(x + self.pos[:, :n], causal)))  # (B, N, V)


class _GPTBlock(nn.Module):
    """minGPT's block (LayerNorm eps 1e-5; separate key/query/value projections with biases; GELU MLP), causal."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.key, self.query, self.value = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        q, k, v = (rearrange(f(h), "b n (h d) -> b h n d", h=self.num_heads) for f in (self.query, self.key,
                                                                                        self.value))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        x = x + self.drop(self.proj(rearrange(y, "b h n d -> b n (h d)")))
        return x + self.drop(self.mlp(self.ln2(x)))


@configurable
class LARPPrior(nn.Module):
    """LARP's AR prior as its authors built it (their `GPTC`, "gptc-S": 12 layers, width 384, 6 heads, 21.7 M):
    a causal GPT over the continuous, l2-normalised codes that predicts the *next code vector*; the logits of
    token i are the cosine similarities of that prediction with the codebook, divided by `temperature`.

    `forward(codes)`: codes (B, N, d) -> predictions (B, N, d), row 0 the input's first code (it is never
    predicted), row i >= 1 from codes < i, l2-normalised. The loss (`vistok.tokenizers.ar_prior`) runs
    `rounds` rounds with scheduled sampling: from the second round on, a share `sampling_ratio(progress)` of the
    inputs (drawn once per step) is replaced by codes sampled from the previous round's logits; the
    cross-entropy is averaged over the rounds. `progress` (0..1, the share of training done) is set by the
    training loop (`vistok.trainers.prior_schedule.PriorSchedule`)."""

    def __init__(self, token_dim: int = 16, max_tokens: int = 1024, width: int = 384, depth: int = 12,
                 num_heads: int = 6, dropout: float = 0.1, temperature: float = 1.0, rounds: int = 2,
                 max_sampling_ratio: float = 0.5, peak_progress: float = 0.3) -> None:
        super().__init__()
        self.token_dim, self.max_tokens, self.temperature, self.rounds = token_dim, max_tokens, temperature, rounds
        self.max_sampling_ratio, self.peak_progress = max_sampling_ratio, peak_progress
        self.progress = 0.0
        self.input_proj = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(0.02 * torch.randn(1, max_tokens, width))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_GPTBlock(width, num_heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, token_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[1]
        if n > self.max_tokens:
            raise ValueError(f"the prior takes at most {self.max_tokens} tokens, got {n}")
        x = self.drop(self.input_proj(codes[:, :-1]) + self.pos[:, : n - 1])  # (B, N-1, D)
        for block in self.blocks:
            x = block(x)
        pred = self.head(self.norm(x))  # (B, N-1, d): the prediction of tokens 1..N-1
        return F.normalize(torch.cat([codes[:, :1], pred], dim=1), dim=-1)

    def logits(self, predictions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(B, N, d) predictions, (V, d) codebook -> (B, N-1, V) logits of tokens 1..N-1."""
        return (predictions @ table.t())[:, 1:] / self.temperature

    def sampling_ratio(self, progress: float | None = None) -> float:
        progress = self.progress if progress is None else progress
        return min(progress / self.peak_progress * self.max_sampling_ratio, self.max_sampling_ratio)
