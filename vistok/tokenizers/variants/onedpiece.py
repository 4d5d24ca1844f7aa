"""One-D-Piece variants (Miwa et al. 2025): TiTok encoder/decoder with tail drop (one K per batch), so any
prefix of the tokens decodes."""

from __future__ import annotations

from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.vq import VQQuantizer
from vistok.tokenizers.dropout import TailDrop
from vistok.tokenizers.registry import register
from vistok.tokenizers.tokenizer import Tokenizer
from vistok.tokenizers.variants.titok import vit_pair


@register("onedpiece-s-256")
def onedpiece_s_256(image_size: int = 256, depth: int = 8) -> Tokenizer:
    """One-D-Piece-S-256: TiTok-S encoder/decoder, 256 tokens, VQ 4096, tail drop (one K per batch)."""
    enc, dec = vit_pair(image_size, 16, 512, depth, 8, 256, 12)
    return Tokenizer(enc, VQQuantizer(dim=12, codebook_size=4096), dec, TailDrop(256))


@register("onedpiece-tiny")
def onedpiece_tiny(num_tokens: int = 16) -> Tokenizer:
    """32 px CPU One-D-Piece: tail drop, FSQ 8,5,5,5."""
    enc, dec = vit_pair(32, 8, 64, 2, 2, num_tokens, 4)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec, TailDrop(num_tokens))
