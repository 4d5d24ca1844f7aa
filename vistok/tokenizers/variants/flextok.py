"""FlexTok variants (Bachmann et al. 2025): causal register encoder, nested dropout, FSQ; any prefix of the
tokens decodes."""

from __future__ import annotations

from vistok.decoders.vit import ViTPixelDecoder
from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.dropout import NestedDropout
from vistok.tokenizers.flextok import FlexTokEncoder
from vistok.tokenizers.registry import register
from vistok.tokenizers.tokenizer import Tokenizer


def _flextok(image_size: int, patch_size: int, width: int, depth: int, heads: int, num_tokens: int,
             levels: list[int], distribution: str = "pow2") -> Tokenizer:
    enc = FlexTokEncoder(image_size=image_size, patch_size=patch_size, width=width, depth=depth, num_heads=heads,
                         num_tokens=num_tokens, token_dim=len(levels))
    dec = ViTPixelDecoder(image_size=image_size, patch_size=patch_size, width=width, depth=depth, num_heads=heads,
                          num_tokens=num_tokens, token_dim=len(levels), token_fill="mask", qk_norm=True)
    return Tokenizer(enc, FSQQuantizer(levels, input_norm=True), dec, NestedDropout(num_tokens, distribution))


@register("flextok-d12")
def flextok_d12(image_size: int = 256, depth: int = 12) -> Tokenizer:
    """FlexTok-style d12 (width 64*d, d heads) on 16 px pixel patches, 1..256 tokens, FSQ 8,8,8,5,5,5 (64,000)."""
    return _flextok(image_size, 16, 64 * 12, depth, 12, 256, [8, 8, 8, 5, 5, 5])


@register("flextok-tiny")
def flextok_tiny(num_tokens: int = 16) -> Tokenizer:
    """32 px CPU FlexTok: causal registers, nested dropout, FSQ 8,5,5,5."""
    return _flextok(32, 8, 64, 2, 2, num_tokens, [8, 5, 5, 5])
