"""A continuous KL bottleneck in the quantizer's place: a diagonal Gaussian posterior per token, as the VAE of
latent diffusion (Rombach et al. 2022, `DiagonalGaussianDistribution`) and OmniTokenizer's stage 3 (Wang et al.
2024, "OmniTokenizer: A Joint Image-Video Tokenizer for Visual Generation": the VQ tokenizer fine-tuned with a
KL loss into a VAE, `--use_vae --kl_weight 1e-6` in its scripts/recons/train.sh).

Per token: mean = the encoder's d-vector, log-variance = a learned linear map of it (clamped to [-30, 20]); in
training the codes are a sample mean + std * eps, in eval mode the mean (a deterministic encoding, as a VAE is
used for generation). The loss is the KL divergence to N(0, I), 0.5 * sum(mean^2 + var - 1 - logvar), summed over
tokens and dimensions and averaged over the batch (OmniTokenizer's and LDM's reduction), reported as the loss
term `kl` (weight `loss_weights: {kl: ...}`, 1e-6 by default).

Departure: OmniTokenizer maps the encoder's width (512) to 2d numbers (mean and log-variance) in one linear
layer; here the encoder's own projection gives the mean (its d = `token_dim` outputs, so the bottleneck keeps
the `Quantizer` contract: d in, d out, and stage 2's projection initialises the mean) and the log-variance is a
linear function of it.

It is continuous: there is no codebook and there are no token ids. `codebook_size`, `indices_to_codes` and
`codes()` raise, naming `Tokenizer.encode_latents` / `decode_latents`; `Tokenizer.encode` / `decode`, token
shards and exports refuse such a model (an export directory is a token vocabulary: codebook.safetensors,
tokens.json); a `vistok fit` checkpoint loads it (`Tokenizer.from_pretrained(ckpt)`).
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.quantizers.base import Quantizer, QuantizerOutput

CONTINUOUS = ("the quantizer is a continuous KL bottleneck (DiagonalGaussianBottleneck): it has no codebook and no "
              "token ids; use Tokenizer.encode_latents / decode_latents")


@configurable
class DiagonalGaussianBottleneck(Quantizer):
    continuous = True
    loss_name = "kl"

    def __init__(self, dim: int = 8, logvar_min: float = -30.0, logvar_max: float = 20.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"DiagonalGaussianBottleneck: dim must be >= 1, got {dim}")
        if not logvar_min < logvar_max:
            raise ValueError(f"DiagonalGaussianBottleneck: logvar_min ({logvar_min}) must be < logvar_max "
                             f"({logvar_max})")
        self.dim, self.logvar_min, self.logvar_max = dim, logvar_min, logvar_max
        self.logvar = nn.Linear(dim, dim)

    @property
    def codebook_size(self) -> int:
        raise ValueError(CONTINUOUS)

    def posterior(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance), each (B, N, d) float32."""
        z = z.float()
        return z, self.logvar(z).clamp(self.logvar_min, self.logvar_max)

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        mean, logvar = self.posterior(z)
        codes = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
        empty = torch.zeros(z.shape[0], 0, dtype=torch.long, device=z.device)  # no ids
        return QuantizerOutput(codes=codes, indices=empty, loss=kl_divergence(mean, logvar), codebook_size=None)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        raise ValueError(CONTINUOUS)

    def check_indices(self, indices: torch.Tensor) -> None:
        raise ValueError(CONTINUOUS)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over all but the batch dimension, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()
