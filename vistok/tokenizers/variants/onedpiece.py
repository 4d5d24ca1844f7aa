"""One-D-Piece variants (Miwa et al. 2025): TiTok encoder/decoder with tail drop (one K per batch), so any
prefix of the tokens decodes. The S/B/L-256 variants are the released models as turingmotors/One-D-Piece builds
them: a legacy TiTok (`titok_official`) with 256 tokens whose decoder takes the first K of them."""

from __future__ import annotations

from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.dropout import TailDrop
from vistok.tokenizers.registry import register
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.tokenizers.variants.titok import titok_official, vit_pair


@register("onedpiece-s-256")
def onedpiece_s_256(image_size: int = 256, num_tokens: int = 256, **kw) -> Tokenizer:
    """One-D-Piece-S-256 (83.87 M): TiTok-S-128's architecture with 256 tokens and tail drop. The B and L models
    are `titok_official("base", "base", 256, ...)` / `("large", "large", ...)` with the same tail drop (the
    importer builds them from their weights)."""
    return titok_official("small", "small", num_tokens=num_tokens, image_size=image_size,
                          token_dropout=TailDrop(num_tokens), **kw)


@register("onedpiece-tiny")
def onedpiece_tiny(num_tokens: int = 16) -> Tokenizer:
    """32 px CPU One-D-Piece: tail drop, FSQ 8,5,5,5."""
    enc, dec = vit_pair(32, 8, 64, 2, 2, num_tokens, 4)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec, TailDrop(num_tokens))
