"""The training loss, in one place: named terms and one mapping of weights.

A term is a scalar tensor with a name. The model's forward produces its own terms (`TokenizerOutput.losses`:
`quantizer`, or `kl` from a continuous KL bottleneck or a VAE (`KLAutoencoder`); a generative decoder's `flow`,
an AR prior's `prior`); the pixel terms below compare a reconstruction with its target; the training system adds
`perceptual` and the adversarial `gan_g` and `gan_fm` (GAN feature matching), weighted in their own settings. The
system
multiplies each term by its weight from one mapping (`TokenizerSystem(loss_weights=...)`, merged over
`DEFAULT_WEIGHTS`), logs every term under its name in one loop and sums them.

Adding a pixel loss is one function in `PIXEL_TERMS` and one config line (`loss_weights: {name: weight}`).
The functions are pure: they never log.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(recon.float(), target.float())


def l2(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(recon.float(), target.float())


def colour(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The squared error of each image's mean colour (B, 3): pixel L2 weighs a picture's mean colour as one of
    its H*W*3 numbers, and a tokenizer that shifts it is what users notice first (a blue sky turned grey)."""
    return F.mse_loss(recon.float().mean((-2, -1)), target.float().mean((-2, -1)))


# Terms computed from (reconstruction, target) in fp32.
PIXEL_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"l1": l1, "l2": l2, "colour": colour}
# Terms the model's forward returns (`TokenizerOutput.losses`) and those the system computes itself.
MODEL_TERMS = ("quantizer", "kl", "flow", "prior", "proxy_codes")  # proxy_codes: TiTok stage 1 (trainers.proxy_codes)
SYSTEM_TERMS = ("perceptual", "gan_g", "gan_fm")

# kl: 1e-6, OmniTokenizer's and latent diffusion's weight for a KL summed over the latent and averaged over the batch.
DEFAULT_WEIGHTS: dict[str, float] = {"l1": 0.0, "l2": 1.0, "colour": 0.0, "quantizer": 1.0, "kl": 1e-6, "flow": 1.0,
                                     "prior": 0.1, "proxy_codes": 1.0}


def resolve_weights(given: dict[str, float] | None) -> dict[str, float]:
    """`DEFAULT_WEIGHTS` updated with the config's mapping; an unknown name or a negative or non-finite weight
    is refused before any work, naming the known terms."""
    import math

    weights = dict(DEFAULT_WEIGHTS)
    known = (*PIXEL_TERMS, *MODEL_TERMS)
    for name, value in (given or {}).items():
        if name not in known:
            raise ValueError(f"loss_weights: unknown loss term {name!r}; known: {', '.join(known)} (perceptual and "
                             "GAN terms are weighted in `perceptual:` and `gan:`)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"loss_weights.{name}: expected a finite number >= 0, got {value!r}")
        weights[name] = float(value)
    return weights


def pixel_terms(recon: torch.Tensor, target: torch.Tensor, weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """The pixel terms with a non-zero weight, unweighted."""
    return {name: fn(recon, target) for name, fn in PIXEL_TERMS.items() if weights.get(name)}


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, weights: dict[str, float] | None = None,
                        **overrides: float) -> torch.Tensor:
    """The weighted sum of the pixel terms (what the adaptive GAN weight balances against). `weights` default
    to L2 alone; keyword overrides change single weights (`colour=4.0`)."""
    weights = {**({"l2": 1.0} if weights is None else weights), **overrides}
    terms = pixel_terms(recon, target, weights)
    return sum((weights[k] * v for k, v in terms.items()), recon.new_zeros((), dtype=torch.float32))
