"""LARP-style 1D video tokenizer networks ("LARP: Tokenizing Videos with a Learned Autoregressive Generative
Prior", Wang et al. 2024).

Encoder: the clip is cut into space-time patches (the first frame alone, then t x p x p patches, as
`vistok.nn.patch3d`), and N learned holistic queries attend to all of them in one ViT; the N query outputs
are the clip's tokens. Decoder: N tokens (1..N, `vistok.nn.token_fill`) plus one learned query per patch go
through a ViT, and each patch query is mapped back to its pixels.

Two architectures. `architecture="official"` is the released network: 16 frames (T = t*k, no first frame
alone) through a Conv3d t x p x p patch embedding with frozen 3-D sine-cosine positions (`vistok.nn.sincos`),
N learned queries (Gaussian, std 0.02), one bidirectional ViT over [patches, queries] with timm-1.0.9-style
blocks (no qkv bias, erf GELU, LayerNorm eps 1e-5) and no extra norms, `proj` the bottleneck's `in_linear`; the
decoder maps the N codes back with `out_linear` plus frozen 1-D sine-cosine positions, appends one query per
patch (frozen 3-D positions plus a learned type embedding), runs the same kind of ViT and maps each patch query
through LayerNorm + Linear to its t x p x p x C pixels (channels last). It decodes all N tokens, never a prefix.
Quantizer: `vistok.quantizers.stochastic_vq`; prior: `vistok.nn.prior.LARPPrior`.

`architecture="vistok"` (the default) departs from LARP:
- the queries are causal among themselves (FlexTok's register mask: query i sees every patch and queries
  <= i, patches never see queries), and the tokens are trained with nested dropout
  (`vistok.tokenizers.dropout`), so the order is coarse-to-fine and any prefix decodes; LARP's queries are
  bidirectional and always all decoded;
- the first frame is patched alone (T = 1 + t*k, 17 frames rather than LARP's 16), so the patch layout is the
  OmniTokenizer one and an image-video stem is shared between the two families;
- LARP's stochastic VQ is not reproduced (any vistok quantizer); its AR-prior loss is an optional plug-in
  (`vistok.nn.prior.CodePrior` + `vistok.tokenizers.ar_prior.ar_prior_loss`, given to `Tokenizer(prior=...)`).

Shapes: (B, C, T, H, W) -> patches (B, L, D), L = T' h w, + queries (B, N, D) -> tokens (B, N, token_dim);
codes (B, K, d) -> (B, C, T, H, W).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.input_spec import InputSpec
from vistok.nn.blocks import Transformer
from vistok.nn.larp_parts import ConvPatchEmbed3D, check_architecture, larp_latent_frames
from vistok.nn.patch3d import VideoPatchEmbed, patch_grid
from vistok.nn.sincos import sincos_3d
from vistok.tokenizers.encoder import Encoder


@configurable
class LARPEncoder(Encoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 128,
        num_frames: int = 17,
        patch_size: int = 8,
        temporal_patch: int = 4,
        in_channels: int = 3,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_tokens: int = 1024,
        token_dim: int = 16,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        architecture: str = "vistok",
    ) -> None:
        super().__init__()
        h, w, gh, gw = patch_grid(image_size, patch_size)
        check_architecture(architecture, h, w)
        self.architecture = architecture
        self.input_spec = InputSpec(in_channels, h, w, str(num_frames))  # one clip length: learned positions
        self.image_size = h if h == w else (h, w)
        self.in_channels, self.num_frames = in_channels, num_frames
        self.num_tokens, self.token_dim = num_tokens, token_dim
        self.num_patches = larp_latent_frames(num_frames, temporal_patch, architecture) * gh * gw
        scale = width**-0.5
        if architecture == "official":
            self.embed = ConvPatchEmbed3D(patch_size, temporal_patch, in_channels, width)
            self.register_buffer("patch_pos", sincos_3d(width, gh, self.num_patches // (gh * gw))[None])
            self.queries = nn.Parameter(0.02 * torch.randn(1, num_tokens, width))
            self.norm_pre, self.norm_post = nn.Identity(), nn.Identity()
            self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, qkv_bias=False,
                                           gelu="exact", norm_eps=1e-5)
            self.attn_mask = None  # bidirectional over [patches, queries]
        else:
            self.embed = VideoPatchEmbed(patch_size, temporal_patch, in_channels, width)
            self.patch_pos = nn.Parameter(scale * torch.randn(1, self.num_patches, width))
            self.queries = nn.Parameter(scale * torch.randn(1, num_tokens, width))
            self.norm_pre = nn.LayerNorm(width)
            self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
            self.norm_post = nn.LayerNorm(width)
            L, N = self.num_patches, num_tokens
            mask = torch.zeros(L + N, L + N, dtype=torch.bool)
            mask[:, :L] = True  # everything sees the patches
            mask[L:, L:] = torch.ones(N, N, dtype=torch.bool).tril()  # query i sees queries <= i
            self.register_buffer("attn_mask", mask, persistent=False)
        self.proj = nn.Linear(width, token_dim)

    def token_grid(self, frames: int | None = None) -> tuple[int]:
        return (self.num_tokens,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> (B, N, token_dim)."""
        patches = rearrange(self.embed(x), "b t h w d -> b (t h w) d") + self.patch_pos.to(x.dtype)  # (B, L, D)
        queries = self.queries.expand(x.shape[0], -1, -1)  # (B, N, D)
        y = self.transformer(self.norm_pre(torch.cat([patches, queries], dim=1)), self.attn_mask)
        return self.proj(self.norm_post(y[:, self.num_patches:]))
