"""FlexTok variants (Bachmann et al. 2025): causal register encoder, nested dropout, FSQ; any prefix of the
tokens decodes. `flextok-d12` / `flextok-tiny` are vistok's FlexTok-style pixel models; `flextok-d12-d12`,
`flextok-d18-d18`, `flextok-d18-d28` and `flextok-official-tiny` are the released architecture
(`FlexTokVAEEncoder`, `FlexTokFlowDecoder`)."""

from __future__ import annotations

from vistok.decoders.vit import ViTPixelDecoder
from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.dropout import NestedDropout
from vistok.tokenizers.flextok import FlexTokEncoder, FlexTokVAEEncoder
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


def _flextok_official(enc_depth: int, dec_depth: int, image_size: int, vae_path: str | None, num_tokens: int,
                      encoder_depth: int | None, decoder_depth: int | None, head_dim: int = 64) -> Tokenizer:
    from vistok.decoders.flextok_flow import FlexTokFlowDecoder
    from vistok.decoders.rectified_flow import FlexTokEulerSampler

    patch = 16  # pixels: FlexTok's latent patch 2 with its 8x VAE, the same sequence without a VAE
    levels = [8, 8, 8, 5, 5, 5]
    common = dict(image_size=image_size, vae_path=vae_path, patch_size=patch, head_dim=head_dim,
                  num_tokens=num_tokens, token_dim=len(levels))
    enc = FlexTokVAEEncoder(width=64 * enc_depth, depth=encoder_depth or enc_depth, **common)
    dec = FlexTokFlowDecoder(width=64 * dec_depth, depth=decoder_depth or dec_depth, **common,
                             sampler=FlexTokEulerSampler(guidance="apg"))
    return Tokenizer(enc, FSQQuantizer(levels), dec, NestedDropout(num_tokens, "uniform_pow2"))


@register("flextok-d12-d12")
def flextok_d12_d12(image_size: int = 256, vae_path: str | None = None, num_tokens: int = 256,
                    encoder_depth: int | None = None, decoder_depth: int | None = None) -> Tokenizer:
    """FlexTok d12-d12 as released (apple/ml-flextok): VAE-latent FlexBlock encoder (width 768, 12 layers),
    256 registers, parameter-free FSQ 8,8,8,5,5,5, rectified-flow FlexBlock decoder (768, 12 layers), FlexTok's
    Euler sampler with APG. `vae_path`: the 16-channel f8 AutoencoderKL (None: the same 16 px patches of pixels).
    `encoder_depth` / `decoder_depth` override the depths (tests), keeping the widths."""
    return _flextok_official(12, 12, image_size, vae_path, num_tokens, encoder_depth, decoder_depth)


@register("flextok-d18-d18")
def flextok_d18_d18(image_size: int = 256, vae_path: str | None = None, num_tokens: int = 256,
                    encoder_depth: int | None = None, decoder_depth: int | None = None) -> Tokenizer:
    """FlexTok d18-d18 as released: width 1152, 18 layers each side (see `flextok-d12-d12`)."""
    return _flextok_official(18, 18, image_size, vae_path, num_tokens, encoder_depth, decoder_depth)


@register("flextok-d18-d28")
def flextok_d18_d28(image_size: int = 256, vae_path: str | None = None, num_tokens: int = 256,
                    encoder_depth: int | None = None, decoder_depth: int | None = None) -> Tokenizer:
    """FlexTok d18-d28 as released: encoder width 1152 x 18 layers, decoder 1792 x 28 (see `flextok-d12-d12`)."""
    return _flextok_official(18, 28, image_size, vae_path, num_tokens, encoder_depth, decoder_depth)


@register("flextok-official-tiny")
def flextok_official_tiny(image_size: int = 32, vae_path: str | None = None, num_tokens: int = 16) -> Tokenizer:
    """The released FlexTok architecture at CPU size: width 64 (head_dim 32), 2 + 2 layers, 32 px, 8 px pixel
    patches, FSQ 8,8,8,5,5,5."""
    from vistok.decoders.flextok_flow import FlexTokFlowDecoder
    from vistok.decoders.rectified_flow import FlexTokEulerSampler

    levels = [8, 8, 8, 5, 5, 5]
    common = dict(image_size=image_size, vae_path=vae_path, patch_size=8, width=64, depth=2, head_dim=32,
                  num_tokens=num_tokens, token_dim=len(levels))
    return Tokenizer(FlexTokVAEEncoder(**common), FSQQuantizer(levels),
                     FlexTokFlowDecoder(**common, sampler=FlexTokEulerSampler(steps=8)),
                     NestedDropout(num_tokens, "uniform_pow2"))
