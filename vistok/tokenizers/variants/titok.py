"""TiTok variants ("An Image is Worth 32 Tokens for Reconstruction and Generation", Yu et al. 2024).

The 256 px sizes follow the paper (patch 16; S = width 512, 8 layers, 8 heads; B = 768/12/12; L = 1024/24/16;
VQ with 4096 codes of dimension 12). The small variants are for the CPU: `titok-tiny` for tests, `titok-demo`
for `make demo` (its recipe is explained in configs/demo.yaml).
"""

from __future__ import annotations

from typing import Any

from vistok.decoders.vit import ViTPixelDecoder
from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.vq import VQQuantizer
from vistok.tokenizers.dropout import NestedDropout, TailDrop
from vistok.tokenizers.registry import register
from vistok.tokenizers.titok import TiTokEncoder
from vistok.tokenizers.tokenizer import Tokenizer


def vit_pair(
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
    """A TiTok encoder and the matching pixel ViT decoder (shared by the One-D-Piece variants)."""
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
    enc, dec = vit_pair(image_size, patch_size, width, depth, heads, num_tokens, 12)
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
    enc, dec = vit_pair(32, 8, 64, 2, 2, num_tokens, 4, token_fill=fill, linear_path=linear_path)
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
