"""The decoder contract: what every decoder of a `Tokenizer` states and does.

A decoder maps quantized codes (B, K, d), 1 <= K <= N, with an optional validity mask (B, K), back to pixels as
its `output_spec` says. A pixel decoder is trained through `forward` on a reconstruction loss; a generative
decoder (`generative = True`, e.g. the rectified-flow decoder) trains on its own objective (`training_loss`) and
samples in `reconstruct`, which then takes the sampler arguments it names in `sampler_arguments`. `Tokenizer`,
the training system and the server read these facts and nothing else, so a new decoder is one class that
subclasses `Decoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.input_spec import InputSpec


class Decoder(nn.Module):
    output_spec: InputSpec  # what the decoder produces (must equal the encoder's input_spec)
    num_tokens: int | None = None  # N it takes; None for a space-time grid (any number of whole latent frames)
    token_dim: int | None = None  # d of the codes it takes
    generative: bool = False  # trains with `training_loss` and samples in `reconstruct`
    sampler_arguments: tuple[str, ...] = ()  # the keyword arguments `reconstruct` uses (steps, guidance_scale, seed)

    def __init__(self) -> None:
        super().__init__()
        self.linear_path: nn.Module | None = None  # see `vistok.tokenizers.encoder.Encoder`

    @property
    def default_steps(self) -> int | None:
        """A generative decoder's default number of sampler steps; None for a pixel decoder."""
        return None

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        """Training of a pixel decoder: codes (B, K, d), valid (B, K) | None -> pixels as `output_spec` says."""
        raise NotImplementedError

    def reconstruct(self, codes: torch.Tensor, valid: torch.Tensor | None = None, **sampling) -> torch.Tensor:
        """Inference: codes -> pixels (unclamped). A pixel decoder ignores sampler arguments."""
        return self(codes, valid)

    def training_loss(self, codes: torch.Tensor, valid: torch.Tensor | None,
                      target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A generative decoder's objective for a batch: (loss, reconstruction or None)."""
        raise NotImplementedError(f"{type(self).__name__} is not generative: it trains through forward")
