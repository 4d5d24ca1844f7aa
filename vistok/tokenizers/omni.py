"""OmniTokenizer-style joint image-video tokenizer networks ("OmniTokenizer: A Joint Image-Video Tokenizer
for Visual Generation", Wang et al. 2024).

Encoder: the first frame is embedded alone (1 x p x p patches) and the rest in t x p x p patches
(`vistok.nn.patch3d`), so a clip of T = 1 + t*k frames gives (1 + k) x h x w tokens and an image is the k = 0
case; spatial blocks (full and window attention) then causal temporal blocks (`vistok.nn.spacetime`); the
tokens are flattened time-major, the first frame's h*w tokens first. The decoder mirrors it (temporal blocks,
then spatial blocks, then a linear map of each token to its patch), causal in time too.

Causality: the tokens of latent frame j depend only on frames <= the last frame of j, and the pixels decoded
for latent frame j only on tokens of latent frames <= j. So a prefix of a clip's ids (whole latent frames) is
the encoding of its first frames, and long clips are encoded and decoded in chunks with the same result
(`vistok.tokenizers.chunked`; `context` is how many latent frames of the past a chunk needs).

Two architectures. `architecture="vistok"` (the default) departs from the paper: temporal attention is windowed
with a relative bias (see `vistok.nn.spacetime`), spatial positions are a learned embedding rather than PEG
convolutions, blocks are standard pre-norm ViT blocks. `architecture="official"` is the released network
(`vistok.nn.omni_blocks`: PEG, cosine attention, GEGLU, a norm per stack, RoPE or a relative bias, encoder
`ttww` and decoder `tttt`, fully causal temporal attention), which released checkpoints import into
(`vistok.importers.omnitokenizer`). Its `peg_order="official"` reproduces the official temporal PEG's reshape
(not causal in time: a later frame moves earlier latents, so chunked encoding is not exact with it); new
training keeps the default, "causal". With the official architecture a chunk is run with the whole past as
context (`context` is unbounded): the ids equal a whole encode, but memory grows with the clip.

Shapes: (B, C, T, H, W) -> (B, T' * h * w, token_dim) -> (B, C, T, H, W), T' = 1 + (T-1)/t.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vistok.configurable import configurable
from vistok.input_spec import InputSpec
from vistok.nn.linear_path import VideoPatchLinearPath
from vistok.nn.omni_blocks import OmniSpaceTime
from vistok.nn.omni_options import UNBOUNDED_CONTEXT, block_letters, check_architecture, size_refusal
from vistok.nn.patch3d import VideoPatchEmbed, latent_frames, patch_grid
from vistok.nn.spacetime import SpaceTimeTransformer
from vistok.tokenizers.encoder import Encoder


@configurable
class OmniEncoder(Encoder):
    token_order = "time-major"

    def __init__(
        self,
        image_size: int | tuple[int, int] = 256,
        patch_size: int = 8,
        temporal_patch: int = 4,
        in_channels: int = 3,
        width: int = 512,
        num_heads: int = 8,
        spatial_blocks: list[str] = ("full", "full", "window", "window"),
        window_size: int = 8,
        temporal_depth: int = 4,
        temporal_window: int = 5,
        num_frames: int = 17,
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
        """`num_frames`: the clip length the model is trained on; it sets `num_tokens` (the token count of such
        a clip) and nothing else: any T = 1 + t*k encodes. `temporal_window`: latent frames a temporal block
        sees (itself included); the default, 5, is the latent length of the 17-frame training clip: full causal
        attention within a training clip, and relative offsets beyond it (never trained) are never used.
        `linear_path`: add a linear map of each patch to its token (`VideoPatchLinearPath`, PCA-initialised by
        `patch_pca_init`); the transformer's output layer then starts at zero, a residual on it.
        `architecture="official"`: the released OmniTokenizer network (`vistok.nn.omni_blocks`; see the module
        docstring); `head_dim`, `spatial_pos`, `peg_order` and `position_bias` apply to it, `temporal_window`
        and `qk_norm` do not (its temporal attention is fully causal), and `proj` is its `pre_vq_conv`."""
        super().__init__()
        h, w, gh, gw = patch_grid(image_size, patch_size)
        check_architecture(architecture, peg_order, linear_path)
        self.architecture, self.peg_order = architecture, peg_order
        self.causal_in_time = not (architecture == "official" and peg_order == "official")
        self.input_spec = InputSpec(in_channels, h, w, f"1+{temporal_patch}k")
        self.image_size = h if h == w else (h, w)
        self.in_channels, self.temporal_patch, self.token_dim = in_channels, temporal_patch, token_dim
        self.grid = (gh, gw)
        self.tokens_per_frame = gh * gw  # tokens of one latent frame
        # what other frame sizes depend on (`size_refusal`)
        self._sizing = dict(patch_size=patch_size, window_size=window_size, windows="window" in spatial_blocks,
                            architecture=architecture, spatial_pos=spatial_pos)
        self.num_frames = num_frames
        self.num_tokens = latent_frames(num_frames, temporal_patch) * self.tokens_per_frame
        self.embed = VideoPatchEmbed(patch_size, temporal_patch, in_channels, width)
        if architecture == "official":
            self.pos, self.norm = None, nn.Identity()
            self.transformer = OmniSpaceTime(width, num_heads, head_dim, (gh, gw), block_letters(spatial_blocks),
                                             temporal_depth, window_size, mlp_ratio,
                                             official_peg_order=peg_order == "official", spatial_pos=spatial_pos,
                                             position_bias=position_bias)
            self.context = UNBOUNDED_CONTEXT
        else:
            self.pos = nn.Parameter(width**-0.5 * torch.randn(1, 1, gh, gw, width))
            self.transformer = SpaceTimeTransformer(width, num_heads, (gh, gw), list(spatial_blocks),
                                                    temporal_depth, window_size, temporal_window, mlp_ratio, qk_norm)
            self.context = self.transformer.context
            self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, token_dim)
        self.linear_path = VideoPatchLinearPath(patch_size, temporal_patch, in_channels, token_dim) if linear_path \
            else None
        if linear_path:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def token_grid(self, frames: int | None = None) -> tuple[int, int, int]:
        """(T', h, w) of a clip of `frames` frames (default `num_frames`)."""
        return (latent_frames(self.num_frames if frames is None else frames, self.temporal_patch), *self.grid)

    def size_refusal(self, height: int, width: int) -> str | None:
        """Why frames of height x width cannot be encoded (None: they can): see
        `vistok.nn.omni_options.size_refusal` (the official network with RoPE takes any size of whole patches and
        windows; OmniTokenizer's multi-resolution training, `vistok.trainers.multiresolution`)."""
        return size_refusal("encoder", (height, width), self.input_spec.size, **self._sizing)

    def forward(self, x: torch.Tensor, starts_video: bool = True) -> torch.Tensor:
        """x (B, C, T, H, W) -> (B, T' * h * w, token_dim), time-major; H and W are `input_spec`'s, or
        another size `size_refusal` accepts. `starts_video=False`: x is a chunk of
        t*k frames that does not begin at frame 0 (chunked encoding)."""
        y = self.embed(x, starts_video)  # (B, T', h, w, D)
        z = self.proj(self.norm(self.transformer(y if self.pos is None else y + self.pos)))  # (B, T', h, w, d)
        if self.linear_path is not None:
            z = z + self.linear_path(x, starts_video)
        return rearrange(z, "b t h w d -> b (t h w) d")
