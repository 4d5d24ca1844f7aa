"""FlexTok's register encoder ("FlexTok: Resampling Images into 1D Token Sequences of Flexible Length",
Bachmann et al. 2025).

Registers (latent tokens) attend to every patch and, causally, to earlier registers only; patches do not
attend to registers. Token i therefore depends only on the image and tokens < i, which together with nested
dropout gives an ordered, coarse-to-fine sequence. Departures: FlexTok encodes VAE latents; this encoder
takes pixels (or any (C, H, W) input with `in_channels`), and it is TiTok's encoder with a causal register
mask, so the two share every other layer.
"""

from __future__ import annotations

from vistok.configurable import configurable
from vistok.tokenizers.titok import TiTokEncoder


@configurable
class FlexTokEncoder(TiTokEncoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        in_channels: int = 3,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_tokens: int = 256,
        token_dim: int = 6,
        mlp_ratio: float = 4.0,
        stem: str = "linear",
        qk_norm: bool = True,
    ) -> None:
        super().__init__(
            image_size=image_size, patch_size=patch_size, in_channels=in_channels, width=width, depth=depth,
            num_heads=num_heads, num_tokens=num_tokens, token_dim=token_dim, mlp_ratio=mlp_ratio, stem=stem,
            qk_norm=qk_norm, causal_tokens=True,
        )
