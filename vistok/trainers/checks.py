"""Refusals of `TokenizerSystem` settings that would silently do nothing or fail late: checked in its
constructor, before any work."""

from __future__ import annotations

from torch import nn

from vistok.decoders.kl_vae import KLAutoencoder
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.trainers.adversarial import GANSettings
from vistok.trainers.losses import PIXEL_TERMS


def generative(model: Tokenizer | KLAutoencoder) -> bool:
    """Whether the model trains on its own objective (a generative decoder) and returns no reconstruction."""
    return isinstance(model, Tokenizer) and model.decoder.generative


def check_discriminators(image: nn.Module | None, video: nn.Module | None, settings: GANSettings) -> None:
    """Settings that would silently do nothing, or fail at the first adversarial step, refused now."""
    if video is not None and not settings.video_weight:
        raise ValueError("model.video_discriminator is set but gan.video_weight is 0: it would never be trained "
                         "against; set gan.video_weight (OmniTokenizer 0.01, LARP 0.3)")
    if settings.feature_matching:
        for name, disc in (("discriminator", image), ("video_discriminator", video)):
            if disc is not None and not callable(getattr(disc, "features", None)):
                raise ValueError(f"gan.feature_matching needs intermediate features; model.{name} "
                                 f"({type(disc).__name__}) has no features() method")


def check_terms(given: dict[str, float] | None, tokenizer: Tokenizer | KLAutoencoder, proxy: bool = False) -> None:
    """A non-zero weight given for a term this model cannot produce is a config mistake: refuse it before any
    work (the defaults of absent terms are harmless)."""
    if isinstance(tokenizer, KLAutoencoder):
        for name, weight in (given or {}).items():
            if weight and name in ("quantizer", "flow", "prior"):
                raise ValueError(f"loss_weights.{name}: a KLAutoencoder has no {name} term (its own term is kl)")
        return
    generative = tokenizer.decoder.generative
    bottleneck = tokenizer.quantizer.loss_name
    why = {"prior": "the tokenizer has no AR prior (Tokenizer(prior=...))" if tokenizer.prior is None else None,
           "kl": (None if bottleneck == "kl" else
                  f"{type(tokenizer.quantizer).__name__} is not a KL bottleneck (its loss term is {bottleneck!r})"),
           "quantizer": (None if bottleneck == "quantizer" else
                         f"{type(tokenizer.quantizer).__name__} is a continuous KL bottleneck: weigh its term as kl"),
           "flow": None if generative else f"{type(tokenizer.decoder).__name__} is not a generative decoder",
           **{name: (f"{type(tokenizer.decoder).__name__} trains on its own objective and returns no reconstruction"
                     if generative else "proxy_codes (TiTok stage 1) decodes no pixels in training" if proxy
                     else None) for name in PIXEL_TERMS},
           "proxy_codes": None if proxy else "needs model.proxy_codes (the frozen MaskGIT-VQGAN of TiTok's stage 1)"}
    for name, weight in (given or {}).items():
        if weight and why.get(name):
            raise ValueError(f"loss_weights.{name}: {why[name]}")
