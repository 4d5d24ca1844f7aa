"""Video tokenizer variants: OmniTokenizer-style space-time grids and LARP-style 1D tokens.

`omnitokenizer`: the paper's layout at 256 px (patch 8, temporal patch 4, width 512, 8 heads; spatial blocks
2 full + 2 window of 8; 4 causal temporal blocks each side, window 5 latent frames; VQ 8192 x 8
l2-normalised): 17 x 256 x 256 -> 5 x 32 x 32 tokens (configs/omnitokenizer_256.yaml). `omni-tiny` (32 px,
FSQ, 2+1 layers a side) is small enough to train on a CPU in a test. `larp` follows LARP's 128 px setting
with 1,024 tokens (VQ 8192 x 16); `larp-tiny` is its CPU counterpart. Both LARP variants use nested dropout
(any prefix decodes); `prior=True` plugs in the AR-prior loss. `omnitokenizer` and `larp` take
`architecture="official"` for the networks as their authors released them.
"""

from __future__ import annotations

from vistok.decoders.larp import LARPDecoder
from vistok.decoders.omni import OmniDecoder
from vistok.nn.prior import CodePrior, LARPPrior
from vistok.quantizers.ema_codebook import EMACodebookQuantizer
from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.stochastic_vq import StochasticVQQuantizer
from vistok.quantizers.vq import VQQuantizer
from vistok.tokenizers.dropout import NestedDropout
from vistok.tokenizers.larp import LARPEncoder
from vistok.tokenizers.omni import OmniEncoder
from vistok.tokenizers.registry import register
from vistok.tokenizers.tokenizer import Tokenizer


def omni_pair(image_size: int, patch_size: int, temporal_patch: int, width: int, num_heads: int,
              spatial_blocks: list[str], window_size: int, temporal_depth: int, temporal_window: int,
              num_frames: int, token_dim: int) -> tuple[OmniEncoder, OmniDecoder]:
    enc = OmniEncoder(image_size=image_size, patch_size=patch_size, temporal_patch=temporal_patch, width=width,
                      num_heads=num_heads, spatial_blocks=spatial_blocks, window_size=window_size,
                      temporal_depth=temporal_depth, temporal_window=temporal_window, num_frames=num_frames,
                      token_dim=token_dim)
    dec = OmniDecoder(image_size=image_size, patch_size=patch_size, temporal_patch=temporal_patch, width=width,
                      num_heads=num_heads, spatial_blocks=spatial_blocks, window_size=window_size,
                      temporal_depth=temporal_depth, temporal_window=temporal_window, token_dim=token_dim)
    return enc, dec


@register("omnitokenizer")
def omnitokenizer(image_size: int = 256, quantizer: str = "vq", architecture: str = "vistok") -> Tokenizer:
    """OmniTokenizer's layout: 17 x 256 x 256 -> 5 x 32 x 32 tokens; VQ 8192 x 8 (l2) or FSQ 8,8,8,5,5,5.
    `architecture="official"`: the released network and EMA codebook (stage 2: RoPE; 53.71 M parameters)."""
    if architecture == "official":
        kw = dict(image_size=image_size, patch_size=8, temporal_patch=4, width=512, num_heads=8, window_size=8,
                  temporal_depth=4, token_dim=8, architecture="official", spatial_pos="rope")
        return Tokenizer(OmniEncoder(spatial_blocks=["full", "full", "window", "window"], num_frames=17, **kw),
                         EMACodebookQuantizer(dim=8, codebook_size=8192),
                         OmniDecoder(spatial_blocks=["full"] * 4, **kw))
    enc, dec = omni_pair(image_size, 8, 4, 512, 8, ["full", "full", "window", "window"], 8, 4, 5, 17,
                         8 if quantizer == "vq" else 6)
    q = VQQuantizer(dim=8, codebook_size=8192) if quantizer == "vq" else FSQQuantizer([8, 8, 8, 5, 5, 5])
    return Tokenizer(enc, q, dec)


@register("omni-tiny")
def omni_tiny(image_size: int = 32, temporal_window: int = 3) -> Tokenizer:
    """32 px, patch 8 (a 4 x 4 grid), temporal patch 4, width 64; 1 full + 1 window spatial block (window 2)
    and 1 causal temporal block a side (window 3 latent frames); FSQ [8,5,5,5]: for tests and CPU demos."""
    enc, dec = omni_pair(image_size, 8, 4, 64, 2, ["full", "window"], 2, 1, temporal_window, 9, 4)
    return Tokenizer(enc, FSQQuantizer([8, 5, 5, 5], input_norm=True), dec)


def _larp(image_size: int, num_frames: int, width: int, depth: int, heads: int, num_tokens: int,
          quantizer, prior: bool, prior_width: int) -> Tokenizer:
    d = quantizer.dim
    enc = LARPEncoder(image_size=image_size, num_frames=num_frames, width=width, depth=depth, num_heads=heads,
                      num_tokens=num_tokens, token_dim=d)
    dec = LARPDecoder(image_size=image_size, num_frames=num_frames, width=width, depth=depth, num_heads=heads,
                      num_tokens=num_tokens, token_dim=d)
    p = CodePrior(d, quantizer.codebook_size, num_tokens, width=prior_width) if prior else None
    return Tokenizer(enc, quantizer, dec, NestedDropout(num_tokens, "pow2", full_prob=0.25), p)


@register("larp")
def larp(prior: bool = True, image_size: int = 128, num_tokens: int = 1024, architecture: str = "vistok") -> Tokenizer:
    """LARP's 128 px setting with 1,024 tokens, VQ 8192 x 16 (17 frames here, see vistok.tokenizers.larp).
    `architecture="official"`: LARP-L as released (16 frames, stochastic VQ, the GPTC-S prior; 172.18 M + 21.70 M)."""
    if architecture == "official":
        kw = dict(image_size=image_size, num_frames=16, patch_size=8, temporal_patch=4, width=768, depth=12,
                  num_heads=12, num_tokens=num_tokens, token_dim=16, architecture="official")
        p = LARPPrior(token_dim=16, max_tokens=num_tokens) if prior else None
        return Tokenizer(LARPEncoder(**kw), StochasticVQQuantizer(dim=16, codebook_size=8192), LARPDecoder(**kw),
                         prior=p)
    return _larp(image_size, 17, 768, 12, 12, num_tokens, VQQuantizer(dim=16, codebook_size=8192), prior, 512)


@register("larp-tiny")
def larp_tiny(num_tokens: int = 16, prior: bool = False) -> Tokenizer:
    """32 px, 5 frames (patch 8, temporal 4: 2 x 4 x 4 patches), width 64, 2+2 layers, FSQ [8,5,5,5]."""
    return _larp(32, 5, 64, 2, 2, num_tokens, FSQQuantizer([8, 5, 5, 5], input_norm=True), prior, 64)
