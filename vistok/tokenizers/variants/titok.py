"""TiTok variants ("An Image is Worth 32 Tokens for Reconstruction and Generation", Yu et al. 2024).

The 256 px sizes are the released models, built as their authors built them (bytedance/1d-tokenizer):
`titok-s-128`, `titok-b-64`, `titok-l-32` (patch 16; S = width 512, 8 layers, 8 heads; B = 768/12/12;
L = 1024/24/16; learned l2-normalised VQ 4096 x 12; class token, legacy token projection, proxy-code head and
MaskGIT-VQGAN conv decoder), `titok-bl-128-vq8k` (single stage: B encoder, L decoder, VQ 8192 x 64, linear
projection, pixel head with a 3x3 conv_out) and `tatitok-bl-128-vq` (the same with TA-TiTok's 77 text tokens in
the decoder). `titok_official` builds any of them at any size (the test fixtures use "small" at 32 px).
The small variants are for the CPU: `titok-tiny` for tests, `titok-demo` for `make demo` (its recipe is
explained in configs/demo.yaml).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vistok.decoders.vit import ViTPixelDecoder
from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.learned_vq import LearnedVQQuantizer
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


# The official widths by size name (bytedance/1d-tokenizer's `vit_enc_model_size` / `vit_dec_model_size`).
SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}


def titok_official(
    encoder_size: str = "small",
    decoder_size: str = "small",
    num_tokens: int = 128,
    token_dim: int = 12,
    codebook_size: int = 4096,
    l2_norm: bool = True,
    legacy: bool = True,
    image_size: int = 256,
    patch_size: int = 16,
    text_context_length: int = 0,
    token_fill: str = "truncate",
    token_dropout: nn.Module | None = None,
    commitment_weight: float = 0.25,
    clustering: bool = False,
    encoder_depth: int | None = None,
    decoder_depth: int | None = None,
) -> Tokenizer:
    """A TiTok as the official code builds it. `legacy=True` (every released S/B/L and One-D-Piece model): the
    legacy token projection and the proxy-code head with the MaskGIT-VQGAN decoder; `legacy=False` (the VQ-8k
    single-stage models, TA-TiTok): the per-token projection and the pixel head with its 3x3 conv_out.
    `encoder_depth` / `decoder_depth` override the size's depth (shallow copies for quick CPU checks)."""
    for name, size in (("encoder_size", encoder_size), ("decoder_size", decoder_size)):
        if size not in SIZES:
            raise ValueError(f"{name} must be one of {sorted(SIZES)}, got {size!r}")
    (ew, ed, eh), (dw, dd, dh) = SIZES[encoder_size], SIZES[decoder_size]
    ed, dd = encoder_depth or ed, decoder_depth or dd
    exact = {"class_token": True, "gelu": "exact", "norm_eps": 1e-5}
    enc = TiTokEncoder(image_size=image_size, patch_size=patch_size, width=ew, depth=ed, num_heads=eh,
                       num_tokens=num_tokens, token_dim=token_dim, projection="legacy" if legacy else "linear",
                       zero_one_pixels=True, **exact)
    head = {"head": "proxy"} if legacy else {"head": "linear", "conv_out": True, "zero_one_pixels": True}
    dec = ViTPixelDecoder(image_size=image_size, patch_size=patch_size, width=dw, depth=dd, num_heads=dh,
                          num_tokens=num_tokens, token_dim=token_dim, token_fill=token_fill,
                          text_context_length=text_context_length, **head, **exact)
    quant = LearnedVQQuantizer(token_dim, codebook_size, l2_norm, commitment_weight, clustering)
    return Tokenizer(enc, quant, dec, token_dropout)


@register("titok-s-128")
def titok_s_128(**kw: Any) -> Tokenizer:
    """TiTok-S-128 (83.67 M parameters with the proxy head and the MaskGIT-VQGAN decoder)."""
    return titok_official(**{"encoder_size": "small", "decoder_size": "small", "num_tokens": 128, **kw})


@register("titok-b-64")
def titok_b_64(**kw: Any) -> Tokenizer:
    """TiTok-B-64 (204.81 M)."""
    return titok_official(**{"encoder_size": "base", "decoder_size": "base", "num_tokens": 64, **kw})


@register("titok-l-32")
def titok_l_32(**kw: Any) -> Tokenizer:
    """TiTok-L-32 (641.05 M)."""
    return titok_official(**{"encoder_size": "large", "decoder_size": "large", "num_tokens": 32, **kw})


@register("titok-bl-128-vq8k")
def titok_bl_128_vq8k(**kw: Any) -> Tokenizer:
    """TiTok-BL-128 VQ-8k, single stage: B encoder, L decoder, VQ 8192 x 64 (not normalised), pixel head."""
    return titok_official(**{"encoder_size": "base", "decoder_size": "large", "num_tokens": 128, "token_dim": 64,
                             "codebook_size": 8192, "l2_norm": False, "legacy": False, **kw})


@register("tatitok-bl-128-vq")
def tatitok_bl_128_vq(**kw: Any) -> Tokenizer:
    """TA-TiTok-BL-128 VQ (Kim et al. 2025): TiTok-BL-128 VQ-8k whose decoder also reads 77 CLIP text tokens."""
    return titok_official(**{"encoder_size": "base", "decoder_size": "large", "num_tokens": 128, "token_dim": 64,
                             "codebook_size": 8192, "l2_norm": False, "legacy": False, "text_context_length": 77,
                             **kw})


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
