"""One-D-Piece variants (Miwa et al. 2025): TiTok encoder/decoder with tail drop (one K per batch), so any
prefix of the tokens decodes. The S/B/L-256 variants are the released models as turingmotors/One-D-Piece builds
them: a legacy TiTok (`titok_official`) with 256 tokens whose decoder takes the first K of them."""

from __future__ import annotations

from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.dropout import TailDrop
from vistok.tokenizers.registry import register
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.tokenizers.variants.titok import titok_official, vit_pair


def _onedpiece(size: str, image_size: int, num_tokens: int) -> Tokenizer:
    return titok_official(size, size, num_tokens=num_tokens, image_size=image_size, token_dropout=TailDrop(num_tokens))


@register("onedpiece-s-256")
def onedpiece_s_256(image_size: int = 256, num_tokens: int = 256) -> Tokenizer:
    """One-D-Piece-S-256 (83.87 M): TiTok-S-128's architecture with 256 tokens and tail drop."""
    return _onedpiece("small", image_size, num_tokens)


@register("onedpiece-b-256")
def onedpiece_b_256(image_size: int = 256, num_tokens: int = 256) -> Tokenizer:
    return _onedpiece("base", image_size, num_tokens)


@register("onedpiece-l-256")
def onedpiece_l_256(image_size: int = 256, num_tokens: int = 256) -> Tokenizer:
    return _onedpiece("large", image_size, num_tokens)


@register("onedpiece-tiny")
def onedpiece_tiny(num_tokens: int = 16) -> Tokenizer:
    """32 px CPU One-D-Piece: tail drop, FSQ 8,5,5,5."""
    enc, dec = vit_pair(32, 8, 64, 2, 2, num_tokens, 4)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec, TailDrop(num_tokens))
