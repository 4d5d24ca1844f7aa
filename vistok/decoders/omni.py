"""The decoder of the OmniTokenizer-style tokenizer (Wang et al. 2024): temporal blocks, then spatial blocks, then a
linear map of each token to its t x p x p patch, causal in time; the mirror of `vistok.tokenizers.omni.OmniEncoder`
(whose docstring describes both architectures and where they depart from the paper).

Shapes: (B, T' * h * w, d) -> (B, C, T, H, W), T = 1 + t (T' - 1).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.decoders.base import Decoder
from vistok.input_spec import InputSpec
from vistok.nn.omni_blocks import OmniSpaceTime
from vistok.nn.omni_options import UNBOUNDED_CONTEXT, block_letters, check_architecture, size_refusal
from vistok.nn.patch3d import VideoPatchHead, patch_grid
from vistok.nn.spacetime import SpaceTimeTransformer


@configurable
class OmniDecoder(Decoder):
    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 8,
        temporal_patch: int = 4,
        out_channels: int = 3,
        width: int = 512,
        num_heads: int = 8,
        spatial_blocks: list[str] = ("full", "full", "window", "window"),
        window_size: int = 8,
        temporal_depth: int = 4,
        temporal_window: int = 5,
        token_dim: int = 8,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        linear_path: bool = False,
        architecture: str = "vistok",
        head_dim: int = 64,
        spatial_pos: str = "rope",
        peg_order: str = "causal",
        position_bias: bool = False,
    ) -> None:
        """`linear_path`: add a linear map of each token to its patch (the mirror of the encoder's); the
        transformer's head then starts at zero, a residual on it. `architecture="official"`: as the encoder's
        (the official decoder's spatial blocks are `[full] * 4`); `proj` is its `post_vq_conv`."""
        super().__init__()
        h, w, gh, gw = patch_grid(image_size, patch_size)
        check_architecture(architecture, peg_order, linear_path)
        self.architecture, self.peg_order = architecture, peg_order
        self.causal_in_time = not (architecture == "official" and peg_order == "official")
        self.output_spec = InputSpec(out_channels, h, w, f"1+{temporal_patch}k")
        self.image_size = h if h == w else (h, w)
        self.token_dim, self.temporal_patch = token_dim, temporal_patch
        self.grid = (gh, gw)
        self.tokens_per_frame = gh * gw
        self.patch_size = patch_size
        self._sizing = dict(patch_size=patch_size, window_size=window_size, windows="window" in spatial_blocks,
                            architecture=architecture, spatial_pos=spatial_pos)
        self.proj = nn.Linear(token_dim, width)
        if architecture == "official":
            self.pos, self.norm = None, nn.Identity()
            self.transformer = OmniSpaceTime(width, num_heads, head_dim, (gh, gw), block_letters(spatial_blocks),
                                             temporal_depth, window_size, mlp_ratio,
                                             official_peg_order=peg_order == "official", spatial_pos=spatial_pos,
                                             position_bias=position_bias, temporal_first=True)
            self.context = UNBOUNDED_CONTEXT
        else:
            self.pos = nn.Parameter(width**-0.5 * torch.randn(1, 1, gh, gw, width))
            self.transformer = SpaceTimeTransformer(width, num_heads, (gh, gw), list(spatial_blocks),
                                                    temporal_depth, window_size, temporal_window, mlp_ratio, qk_norm,
                                                    temporal_first=True)
            self.context = self.transformer.context
            self.norm = nn.LayerNorm(width)
        self.head = VideoPatchHead(patch_size, temporal_patch, out_channels, width)
        self.linear_path = VideoPatchHead(patch_size, temporal_patch, out_channels, token_dim) if linear_path \
            else None
        if linear_path:
            for layer in (self.head.first, self.head.rest):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def size_refusal(self, height: int, width: int) -> str | None:
        """Why frames of height x width cannot be decoded (None: they can); as the encoder's."""
        return size_refusal("decoder", (height, width), self.output_spec.size, **self._sizing)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None,
                starts_video: bool = True, size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes (B, T' * h * w, d), whole latent frames, time-major -> (B, C, T, H, W), unclamped. `valid` is
        accepted for the common decoder call and must be None (grid tokens are never dropped). `size`: the
        (H, W) to decode to when it is not `output_spec`'s (the tokens are then that size's grid; the caller
        checked it with `size_refusal`)."""
        if valid is not None and not bool(valid.all()):
            raise ValueError("a space-time grid decoder takes whole latent frames; ragged token masks are for 1D "
                             "tokenizers")
        gh, gw = self.grid if size is None else (size[0] // self.patch_size, size[1] // self.patch_size)
        n = codes.shape[1]
        if n == 0 or n % (gh * gw):
            raise ValueError(f"the decoder takes whole latent frames of {gh} x {gw} = {gh * gw} tokens, got {n} "
                             "tokens")
        grid = rearrange(codes, "b (t h w) d -> b t h w d", h=gh, w=gw)
        y = self.proj(grid)  # (B, T', h, w, D)
        out = self.head(self.norm(self.transformer(y if self.pos is None else y + self.pos)), starts_video)
        return out if self.linear_path is None else out + self.linear_path(grid, starts_video)
