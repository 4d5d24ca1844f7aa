"""Single-stage TiTok pixel decoder (Yu et al. 2024), accepting any number of tokens 1..N.

A learned mask token per patch position (plus its position embedding) is concatenated with the projected
tokens (plus the first K token position embeddings); one ViT runs over both and the patch outputs are
mapped to pixels. Departures: tokens shorter than N are handled in one of two ways, chosen at construction:
- `token_fill="truncate"` (One-D-Piece): the decoder sees only the K tokens; padded positions of a
  variable-length batch are masked out of attention;
- `token_fill="mask"` (FlexTok): positions K..N-1 are replaced by a learned "dropped token" so the decoder
  always sees N positions, exactly as in nested-dropout training.
Token filling is `vistok.nn.token_fill.TokenFill`, shared with `FlowDecoder`. Any height x width
(`image_size=(H, W)`): the patch grid is H/p x W/p. Optional conv upsampling head (`head="conv"`) for tiny
images. Optional linear path (`linear_path=True`, small images only): a linear map of all token channels is
added to the pixels and the head's last layer starts at zero, so a PCA initialisation
(`vistok.tokenizers.pca_init`) is the starting point (`vistok.nn.linear_path`).
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.input_spec import InputSpec, image_hw
from vistok.nn.attention import key_padding_mask
from vistok.nn.blocks import Transformer
from vistok.nn.linear_path import LinearDecoderPath
from vistok.nn.patch import build_head
from vistok.nn.token_fill import TokenFill, legacy_keys


@configurable
class ViTPixelDecoder(Decoder):
    legacy_state_keys = legacy_keys("dropped_token")  # names in exports before `TokenFill`

    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        out_channels: int = 3,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        num_tokens: int = 128,
        token_dim: int = 12,
        mlp_ratio: float = 4.0,
        head: str = "linear",
        token_fill: str = "truncate",
        qk_norm: bool = False,
        head_channels: list[int] | None = None,
        linear_path: bool = False,
    ) -> None:
        """`image_size`: the side of square images, or (height, width). `token_fill`: "truncate" or "mask"
        (see `vistok.nn.token_fill`)."""
        super().__init__()
        h, w = image_hw(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.output_spec = InputSpec(out_channels, h, w, "1")
        self.image_size = h if h == w else (h, w)
        self.num_tokens, self.token_dim = num_tokens, token_dim
        grid = (h // patch_size, w // patch_size)
        self.num_patches = grid[0] * grid[1]
        scale = width**-0.5
        self.token_fill = TokenFill(num_tokens, token_dim, width, token_fill)
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))  # TiTok's name: the per-patch query
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
        self.norm_post = nn.LayerNorm(width)
        self.head = build_head(head, patch_size, out_channels, width, grid, head_channels)
        self.linear_path = LinearDecoderPath(out_channels, (h, w), num_tokens, token_dim) if linear_path else None
        if linear_path:  # the transformer starts as a zero residual on the linear (PCA) reconstruction
            last = [m for m in self.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool, False where a token is dropped or padding.

        Returns (B, C, H, W), unclamped (the training loss sees the raw output).
        """
        b = codes.shape[0]
        tokens, key_valid = self.token_fill(codes, valid)  # (B, N or K, D), (B, K) | None
        mask = None if key_valid is None else key_padding_mask(key_valid, prefix=self.num_patches)
        queries = (self.mask_token + self.patch_pos).expand(b, -1, -1).to(tokens.dtype)  # (B, L, D)
        h = self.transformer(self.norm_pre(torch.cat([queries, tokens], dim=1)), mask)
        out = self.head(self.norm_post(h[:, : self.num_patches]))  # (B, C, H, W)
        if self.linear_path is not None:
            out = out + self.linear_path(codes, valid)
        return out

