"""The encoder contract: what every encoder of a `Tokenizer` states and does.

An encoder maps pixels as its `input_spec` says ((B, C, H, W), or (B, C, T, H, W) for video) to latent tokens
(B, N, token_dim). `Tokenizer` reads these facts and nothing else, so a new encoder family is one class that
subclasses `Encoder` (and registers its variants in `vistok.tokenizers.variants`). Every attribute below is set
in the subclass's constructor (after `super().__init__()`) or keeps its default.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.input_spec import InputSpec


class Encoder(nn.Module):
    input_spec: InputSpec  # what the encoder takes: channels, frames rule, height, width
    num_tokens: int  # N: tokens of one input (of a `num_frames` clip for a space-time grid)
    token_dim: int  # d: the width of a token before quantization
    num_frames: int = 1  # the clip length the encoder is built for (1: images)
    tokens_per_frame: int | None = None  # a space-time grid's tokens per latent frame; None for 1D tokens
    token_order: str | None = None  # tokens.json's `order` when the encoder fixes one (else the tokenizer decides)

    def __init__(self) -> None:
        super().__init__()
        # A PCA-initialised linear path (`vistok.nn.linear_path`), when the encoder has one; set here so that a
        # subclass assigning a module registers it (a class attribute would shadow nn.Module's registry).
        self.linear_path: nn.Module | None = None

    def token_grid(self, frames: int | None = None) -> tuple[int, ...]:
        """The token layout: (N,) for 1D tokens; (T', h, w) of a clip of `frames` frames for a space-time grid."""
        return (self.num_tokens,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - the contract
        """x as `input_spec` says -> latent tokens (B, N, token_dim)."""
        raise NotImplementedError
