"""Variants with a pixel-space rectified-flow decoder (`vistok.decoders.flow`): `rf-tiny` is `flextok-tiny`
with that decoder, `rf-demo` the model of configs/demo_rf.yaml."""

from __future__ import annotations

from vistok.decoders.flow import FlowDecoder
from vistok.decoders.rectified_flow import EulerSampler, RectifiedFlow
from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.dropout import NestedDropout
from vistok.tokenizers.flextok import FlexTokEncoder
from vistok.tokenizers.registry import register
from vistok.tokenizers.titok import TiTokEncoder
from vistok.tokenizers.tokenizer import Tokenizer


@register("rf-tiny")
def rf_tiny(num_tokens: int = 16, patch_size: int = 8) -> Tokenizer:
    """32 px CPU FlexTok with a pixel-space rectified-flow decoder (width 64, 2 layers), FSQ 8,5,5,5."""
    levels = [8, 5, 5, 5]
    enc = FlexTokEncoder(image_size=32, patch_size=8, width=64, depth=2, num_heads=2, num_tokens=num_tokens,
                         token_dim=len(levels))
    dec = FlowDecoder(image_size=32, patch_size=patch_size, width=64, depth=2, num_heads=2, num_tokens=num_tokens,
                      token_dim=len(levels))
    return Tokenizer(enc, FSQQuantizer(levels, input_norm=True), dec, NestedDropout(num_tokens, "pow2"))


@register("rf-demo")
def rf_demo(num_tokens: int = 32, levels: tuple[int, ...] = (8, 8, 8, 5, 5)) -> Tokenizer:
    """configs/demo_rf.yaml: the demo encoder, FSQ and nested dropout with a pixel-space rectified-flow decoder
    (patch 4 on 32 px, width 128, 3 layers, 2 heads)."""
    d = len(levels)
    enc = TiTokEncoder(image_size=32, patch_size=8, width=128, depth=2, num_heads=2, num_tokens=num_tokens,
                       token_dim=d, stem="conv", stem_channels=[16, 32, 64])
    dec = FlowDecoder(image_size=32, patch_size=4, width=128, depth=3, num_heads=2, num_tokens=num_tokens,
                      token_dim=d, qk_norm=False, objective=RectifiedFlow(cond_drop_prob=0.1, logit_mean=1.0),
                      sampler=EulerSampler())
    return Tokenizer(enc, FSQQuantizer(list(levels), input_norm=True), dec,
                     NestedDropout(num_tokens, "pow2", full_prob=0.25))
