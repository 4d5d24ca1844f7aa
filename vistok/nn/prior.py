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
