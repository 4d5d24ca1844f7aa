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

Options that reproduce the official TiTok / One-D-Piece decoders (defaults: our form for training from scratch):
- `class_token=True`: a learned class token before the patch queries (position table of L+1 rows);
- `head="proxy"`: TiTok's two-stage head (`vistok.decoders.proxy_head`): logits over a MaskGIT-VQGAN codebook,
  soft codes, the MaskGIT-VQGAN conv decoder; `proxy_logits` gives the stage-1 training target's logits;
- `conv_out=True`: a 3x3 conv on the pixels after the linear patch head (TiTok's single-stage VQ models);
- `gelu="exact"`, `norm_eps=1e-5`: the official blocks' numerics;
- `text_context_length=T > 0` (TA-TiTok, Kim et al. 2025): T text-embedding tokens (`text_embed_dim`, CLIP's
  768) are projected and appended after the image tokens. `forward(codes, valid, text=...)` takes them as
  (B, T, E); without `text`, the buffer `default_text` (1, T, E; zeros until set, e.g. to the CLIP embedding of
  the empty prompt) is used, so `Tokenizer.decode` works unchanged;
- `zero_one_pixels=True`: the linear head's output is read as [0, 1] pixels (the official convention) and
  converted to [-1, 1] (the proxy head's conv decoder always works in [0, 1] and converts).
"""

from __future__ import annotations

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.decoders.proxy_head import ProxyCodeHead
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
        class_token: bool = False,
        conv_out: bool = False,
        gelu: str = "tanh",
        norm_eps: float = 1e-6,
        zero_one_pixels: bool = False,
        proxy_codebook_size: int = 1024,
        proxy_code_dim: int = 256,
        text_context_length: int = 0,
        text_embed_dim: int = 768,
    ) -> None:
        """`image_size`: the side of square images, or (height, width). `token_fill`: "truncate" or "mask"
        (see `vistok.nn.token_fill`). `head`: "linear", "conv" or "proxy" (with `proxy_codebook_size` x
        `proxy_code_dim`, MaskGIT-VQGAN's 1024 x 256). See the module docstring for the other options."""
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
        self.class_token = nn.Parameter(scale * torch.randn(1, 1, width)) if class_token else None
        self.prefix = self.num_patches + int(class_token)  # positions before the tokens
        self.patch_pos = nn.Parameter(scale * torch.randn(1, self.prefix, width))  # row 0: the class token's
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, gelu=gelu, norm_eps=norm_eps)
        self.norm_post = nn.LayerNorm(width)
        self.zero_one_pixels = zero_one_pixels
        if head == "proxy":
            if head_channels is not None or conv_out or zero_one_pixels:
                raise ValueError("head='proxy' takes no head_channels, conv_out or zero_one_pixels (its MaskGIT "
                                 "decoder fixes them)")
            self.head = ProxyCodeHead(width, grid, patch_size, out_channels, proxy_codebook_size, proxy_code_dim)
        else:
            self.head = build_head(head, patch_size, out_channels, width, grid, head_channels)
        self.conv_out = nn.Conv2d(out_channels, out_channels, 3, padding=1) if conv_out else None
        self.text_proj = nn.Linear(text_embed_dim, width) if text_context_length else None
        if text_context_length:
            self.text_pos = nn.Parameter(scale * torch.randn(1, text_context_length, width))
            self.register_buffer("default_text", torch.zeros(1, text_context_length, text_embed_dim))
        self.linear_path = LinearDecoderPath(out_channels, (h, w), num_tokens, token_dim) if linear_path else None
        if linear_path:  # the transformer starts as a zero residual on the linear (PCA) reconstruction
            last = [m for m in self.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def features(self, codes: torch.Tensor, valid: torch.Tensor | None = None,
                 text: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), valid (B, K) | None, text (B, T, E) | None -> the normed patch outputs (B, L, D)."""
        b = codes.shape[0]
        tokens, key_valid = self.token_fill(codes, valid)  # (B, N or K, D), (B, K) | None
        if self.text_proj is not None:
            text = self.default_text.expand(b, -1, -1) if text is None else text
            tokens = torch.cat([tokens, self.text_proj(text.to(tokens.dtype)) + self.text_pos], dim=1)
            if key_valid is not None:  # text tokens are always valid keys
                key_valid = torch.cat([key_valid, key_valid.new_ones(b, self.text_pos.shape[1])], dim=1)
        elif text is not None:
            raise ValueError("this decoder takes no text (text_context_length is 0)")
        mask = None if key_valid is None else key_padding_mask(key_valid, prefix=self.prefix)
        queries = self.mask_token.expand(b, self.num_patches, -1)  # (B, L, D)
        if self.class_token is not None:
            queries = torch.cat([self.class_token.expand(b, -1, -1), queries], dim=1)  # (B, L+1, D)
        queries = (queries + self.patch_pos).to(tokens.dtype)
        h = self.transformer(self.norm_pre(torch.cat([queries, tokens], dim=1)), mask)
        return self.norm_post(h[:, self.prefix - self.num_patches : self.prefix])  # (B, L, D)

    def proxy_logits(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """TiTok stage 1: (B, L, V) logits over the proxy (MaskGIT-VQGAN) codebook, one row per patch."""
        if not isinstance(self.head, ProxyCodeHead):
            raise ValueError("proxy_logits needs head='proxy'")
        return self.head.logits(self.features(codes, valid))

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool, False where a token is dropped or padding; text
        (B, T, E) for a text-aware decoder (else its `default_text`).

        Returns (B, C, H, W), unclamped (the training loss sees the raw output).
        """
        out = self.head(self.features(codes, valid, text))  # (B, C, H, W)
        if self.conv_out is not None:
            out = self.conv_out(out)
        if self.zero_one_pixels:
            out = out * 2 - 1
        if self.linear_path is not None:
            out = out + self.linear_path(codes, valid)
        return out

