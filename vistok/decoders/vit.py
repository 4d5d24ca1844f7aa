"""Single-stage TiTok pixel decoder (Yu et al. 2024), accepting any number of tokens 1..N.

A learned mask token per patch position (plus its position embedding) is concatenated with the projected
tokens (plus the first K token position embeddings); one ViT runs over both and the patch outputs are
mapped to pixels. Departures: tokens shorter than N are handled in one of two ways, chosen at construction:
- `token_fill="truncate"` (One-D-Piece): the decoder sees only the K tokens; padded positions of a
  variable-length batch are masked out of attention;
- `token_fill="mask"` (FlexTok): positions K..N-1 are replaced by a learned "dropped token" so the decoder
  always sees N positions, exactly as in nested-dropout training.
Optional conv upsampling head (`head="conv"`) for tiny images. Optional linear path (`linear_path=True`, small
images only): a linear map of all token channels is added to the pixels and the head's last layer starts at
zero, so a PCA initialisation (`vistok.tokenizers.pca_init`) is the starting point (`vistok.nn.linear_path`).
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.nn.attention import key_padding_mask
from vistok.nn.blocks import Transformer
from vistok.nn.linear_path import LinearDecoderPath
from vistok.nn.patch import build_head


@configurable
class ViTPixelDecoder(nn.Module):
    def __init__(
        self,
        image_size: int = 256,
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
        super().__init__()
        if token_fill not in ("truncate", "mask"):
            raise ValueError(f"token_fill must be 'truncate' or 'mask', got {token_fill!r}")
        self.image_size, self.num_tokens, self.token_fill = image_size, num_tokens, token_fill
        grid = image_size // patch_size
        self.num_patches = grid * grid
        scale = width**-0.5
        self.token_proj = nn.Linear(token_dim, width)
        self.token_pos = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
        self.dropped_token = nn.Parameter(scale * torch.randn(1, 1, width)) if token_fill == "mask" else None
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
        self.norm_post = nn.LayerNorm(width)
        self.head = build_head(head, patch_size, out_channels, width, grid, head_channels)
        self.linear_path = LinearDecoderPath(out_channels, image_size, num_tokens, token_dim) if linear_path else None
        if linear_path:  # the transformer starts as a zero residual on the linear (PCA) reconstruction
            last = [m for m in self.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool, False where a token is dropped or padding.

        Returns (B, C, H, W), unclamped (the training loss sees the raw output).
        """
        b, k, _ = codes.shape
        if not 1 <= k <= self.num_tokens:
            raise ValueError(f"the decoder takes 1..{self.num_tokens} tokens, got {k}")
        tokens = self.token_proj(codes)  # (B, K, D)
        mask = None
        if self.token_fill == "mask":
            keep = torch.ones(b, k, dtype=torch.bool, device=codes.device) if valid is None else valid
            if k < self.num_tokens:
                pad = self.num_tokens - k
                tokens = torch.cat([tokens, tokens.new_zeros(b, pad, tokens.shape[-1])], dim=1)
                keep = torch.cat([keep, keep.new_zeros(b, pad)], dim=1)
            tokens = torch.where(keep[..., None], tokens, self.dropped_token.to(tokens.dtype))
            tokens = tokens + self.token_pos  # (B, N, D)
        else:
            tokens = tokens + self.token_pos[:, :k]
            if valid is not None and not bool(valid.all()):
                mask = key_padding_mask(valid, prefix=self.num_patches)
        queries = (self.mask_token + self.patch_pos).expand(b, -1, -1).to(tokens.dtype)  # (B, L, D)
        h = self.transformer(self.norm_pre(torch.cat([queries, tokens], dim=1)), mask)
        out = self.head(self.norm_post(h[:, : self.num_patches]))  # (B, C, H, W)
        if self.linear_path is not None:
            out = out + self.linear_path(codes, valid)
        return out

    def reconstruct(self, codes: torch.Tensor, valid: torch.Tensor | None = None, **sampling) -> torch.Tensor:
        """Inference entry point shared by all decoders; a pixel decoder ignores sampler arguments."""
        return self.forward(codes, valid)
