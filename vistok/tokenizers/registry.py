"""Named tokenizer variants: `build_tokenizer("titok-s-128")`.

FlexTok and One-D-Piece variants are flexible-length: any prefix of their tokens decodes. The 256 px TiTok
sizes follow the paper (patch 16; S = width 512, 8 layers, 8 heads; B = 768/12/12;
L = 1024/24/16; VQ with 4096 codes of dimension 12). The small variants are for the CPU: `titok-tiny` for
tests, `titok-demo` for `make demo` (its recipe is explained in configs/demo.yaml). `rf-tiny` is `flextok-tiny`
with a rectified-flow decoder (`vistok.decoders.flow`), `rf-demo` the model of configs/demo_rf.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vistok.decoders.flow import FlowDecoder
from vistok.decoders.rectified_flow import EulerSampler, RectifiedFlow
from vistok.decoders.vit import ViTPixelDecoder
from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.vq import VQQuantizer
from vistok.tokenizers.dropout import NestedDropout, TailDrop
from vistok.tokenizers.flextok import FlexTokEncoder
from vistok.tokenizers.titok import TiTokEncoder
from vistok.tokenizers.tokenizer import Tokenizer

VARIANTS: dict[str, Callable[..., Tokenizer]] = {}


def register(name: str):
    def wrap(fn: Callable[..., Tokenizer]) -> Callable[..., Tokenizer]:
        VARIANTS[name] = fn
        return fn

    return wrap


def build_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    if name not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name](**overrides)


def _vit_pair(
    image_size: int,
    patch_size: int,
    width: int,
    depth: int,
    num_heads: int,
    num_tokens: int,
    token_dim: int,
    stem: str = "linear",
    token_fill: str = "truncate",
    causal_tokens: bool = False,
    decoder_depth: int | None = None,
    linear_path: bool = False,
) -> tuple[TiTokEncoder, ViTPixelDecoder]:
    enc = TiTokEncoder(
        image_size=image_size, patch_size=patch_size, width=width, depth=depth, num_heads=num_heads,
        num_tokens=num_tokens, token_dim=token_dim, stem=stem, causal_tokens=causal_tokens, linear_path=linear_path,
    )
    dec = ViTPixelDecoder(
        image_size=image_size, patch_size=patch_size, width=width, depth=decoder_depth or depth,
        num_heads=num_heads, num_tokens=num_tokens, token_dim=token_dim, head=stem, token_fill=token_fill,
        linear_path=linear_path,
    )
    return enc, dec


def _titok_256(
    width: int, depth: int, heads: int, num_tokens: int, image_size: int = 256, patch_size: int = 16
) -> Tokenizer:
    enc, dec = _vit_pair(image_size, patch_size, width, depth, heads, num_tokens, 12)
    return Tokenizer(enc, VQQuantizer(dim=12, codebook_size=4096), dec)


@register("titok-s-128")
def titok_s_128(**kw: Any) -> Tokenizer:
    return _titok_256(**{"width": 512, "depth": 8, "heads": 8, "num_tokens": 128, **kw})


@register("titok-b-64")
def titok_b_64(**kw: Any) -> Tokenizer:
    return _titok_256(**{"width": 768, "depth": 12, "heads": 12, "num_tokens": 64, **kw})


@register("titok-l-32")
def titok_l_32(**kw: Any) -> Tokenizer:
    return _titok_256(**{"width": 1024, "depth": 24, "heads": 16, "num_tokens": 32, **kw})


@register("titok-tiny")
def titok_tiny(num_tokens: int = 8, dropout: str | None = None, linear_path: bool = False) -> Tokenizer:
    """32 px, patch 8, width 64, 2+2 layers, FSQ 1000 codes: a few hundred thousand parameters, for tests.
    `linear_path` adds the PCA-initialisable linear paths of the demo recipe (then FSQ has no input norm: the
    PCA initialisation sets the scale of z itself)."""
    fill = "mask" if dropout == "nested" else "truncate"
    enc, dec = _vit_pair(32, 8, 64, 2, 2, num_tokens, 4, token_fill=fill, linear_path=linear_path)
    drop = {None: None, "nested": NestedDropout(num_tokens, "pow2"), "tail": TailDrop(num_tokens)}[dropout]
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=not linear_path), dec, drop)


@register("titok-demo")
def titok_demo(num_tokens: int = 64, levels: tuple[int, ...] = (16, 16, 16, 16)) -> Tokenizer:
    """The `make demo` model (configs/demo.yaml): 32 px, narrow conv stem/head around a 4x4 grid, width 128,
    2+2 layers, 2 heads, linear paths for a PCA initialisation, 64 tokens of FSQ [16,16,16,16], nested dropout."""
    d = len(levels)
    enc = TiTokEncoder(image_size=32, patch_size=8, width=128, depth=2, num_heads=2, num_tokens=num_tokens,
                       token_dim=d, stem="conv", stem_channels=[16, 32, 64], linear_path=True)
    dec = ViTPixelDecoder(image_size=32, patch_size=8, width=128, depth=2, num_heads=2, num_tokens=num_tokens,
                          token_dim=d, head="conv", token_fill="mask", head_channels=[64, 32, 16], linear_path=True)
    return Tokenizer(enc, FSQQuantizer(list(levels)), dec, NestedDropout(num_tokens, "pow2", full_prob=0.25))


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


@register("onedpiece-s-256")
def onedpiece_s_256(image_size: int = 256, depth: int = 8) -> Tokenizer:
    """One-D-Piece-S-256: TiTok-S encoder/decoder, 256 tokens, VQ 4096, tail drop (one K per batch)."""
    enc, dec = _vit_pair(image_size, 16, 512, depth, 8, 256, 12)
    return Tokenizer(enc, VQQuantizer(dim=12, codebook_size=4096), dec, TailDrop(256))


@register("onedpiece-tiny")
def onedpiece_tiny(num_tokens: int = 16) -> Tokenizer:
    """32 px CPU One-D-Piece: tail drop, FSQ 8,5,5,5."""
    enc, dec = _vit_pair(32, 8, 64, 2, 2, num_tokens, 4)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec, TailDrop(num_tokens))
