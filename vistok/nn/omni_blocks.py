"""OmniTokenizer's transformer as its authors built it ("OmniTokenizer: A Joint Image-Video Tokenizer for Visual
Generation", Wang et al. 2024, and its released code), for `OmniEncoder(architecture="official")` and the
decoder's mirror, so that released checkpoints load one-to-one and compute what they computed.

A stack is a string of block letters: `t` is PEG -> cosine attention -> GEGLU MLP, `w` is Swin window attention
-> GEGLU MLP; every stack ends in its own LayerNorm (`norm_out`). The encoder runs a spatial stack (`ttww`) inside
each latent frame and then a temporal stack (`tttt`, causal) along time at each position; the decoder runs the
temporal stack first and then its spatial stack (`tttt`).

- PEG: a depthwise 3x3x3 convolution over (T', h, w) added to its input, zero-padded, causal in time (two
  frames of the past) when `causal_peg`. The official code views a temporal stack's `(b h w) t d` sequence as
  `b t h w d` without permuting (its source marks the line "TO FIX"), so its temporal PEGs mix positions and
  frames and the encoder is not causal in time. `peg_order="official"` reproduces that (released weights were
  trained with it); the default, "causal", convolves the true (T', h, w) grid.
- Cosine attention: q and k l2-normalised per head, times a learned per-dimension scale each, logits times 8;
  no projection biases; a LayerNorm with a fixed zero bias (a buffer) before the query projection only: the
  official code projects keys and values from the block's un-normalised input.
- Spatial positions: 2-D RoPE on q and k of the spatial `t` blocks (`spatial_pos="rope"`, stages 2 and 3 of the
  official recipe), or a continuous relative position bias (an MLP of log distances, `spatial_pos="rel"`,
  stage 1). The official code takes PyTorch's SDPA path on any torch >= 2.1, where that bias (and the ALiBi of
  causal temporal attention) is computed but never added to the logits; `position_bias=False` (the default)
  is that computation. `position_bias=True` is the official non-SDPA path (the README's note for its
  ImageNet-only checkpoint): the bias and ALiBi are added.
- Window attention: Swin's W-MSA (no shift) with a learned relative position table, scale head_dim^-0.5.

Parameters the official modules own but never use (each attention's `context_norm`, the relative-bias MLP of
the temporal blocks, the spatial one on the SDPA path) are kept, frozen, so that a checkpoint maps one-to-one
and the parameter count equals the official one (53.71 M at paper size).

Shapes: spatial stacks take (B T', h w, D) and temporal stacks (B h w, T', D); `OmniSpaceTime` takes and
returns (B, T', h, w, D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

BLOCK_KINDS = ("t", "w")


class BufferBiasLayerNorm(nn.Module):
    """LayerNorm with a learned gain and a zero bias held as a buffer (the official `LayerNorm`)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias)


class GEGLUFeedForward(nn.Module):
    """LayerNorm -> Linear(dim, 2 * hidden, no bias) -> value * GELU(gate) -> Linear(hidden, dim, no bias), with
    hidden = int(mult * 2/3 * dim) (Shazeer 2020)."""

    def __init__(self, dim: int, mult: float = 4.0) -> None:
        super().__init__()
        hidden = int(mult * (2 / 3) * dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.up(self.norm(x)).chunk(2, dim=-1)
        return self.down(value * F.gelu(gate))


class PEG(nn.Module):
    """Position-encoding generator: a depthwise 3x3x3 convolution over the (T', h, w) grid, zero-padded (two past
    frames and none of the future when causal). Returns the convolution only; the block adds its input."""

    def __init__(self, dim: int, causal: bool = True, official_order: bool = False) -> None:
        super().__init__()
        self.causal, self.official_order = causal, official_order
        self.conv = nn.Conv3d(dim, dim, 3, groups=dim)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T', h, w, D) -> same
        x = rearrange(x, "b t h w d -> b d t h w")
        x = F.pad(x, (1, 1, 1, 1, 2, 0) if self.causal else (1, 1, 1, 1, 1, 1))
        return rearrange(self.conv(x), "b d t h w -> b t h w d")

    def forward(self, x: torch.Tensor, shape: tuple[int, int, int, int], temporal: bool) -> torch.Tensor:
        """x (B T', h w, D) (spatial) or (B h w, T', D) (temporal); shape (B, T', h, w)."""
        b, t, h, w = shape
        if temporal and not self.official_order:
            grid = rearrange(x, "(b h w) t d -> b t h w d", b=b, h=h, w=w)
            return rearrange(self._conv(grid), "b t h w d -> (b h w) t d")
        # spatial sequences are in (b t) (h w) order already; the official temporal PEG reads its (b h w) t
        # sequence in that order too, without permuting
        return self._conv(x.reshape(b, t, h, w, -1)).reshape(x.shape)


class ContinuousPositionBias(nn.Module):
    """(heads, N, N) bias of an h x w grid from an MLP of signed log relative positions (Swin v2)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1), nn.Linear(dim, dim), nn.LeakyReLU(0.1),
                                 nn.Linear(dim, heads))

    def forward(self, h: int, w: int) -> torch.Tensor:
        device = self.net[0].weight.device
        grid = torch.stack(torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                                          indexing="ij"))
        grid = rearrange(grid, "c h w -> (h w) c")
        rel = (grid[:, None] - grid[None, :]).float()  # (N, N, 2)
        rel = torch.sign(rel) * torch.log(rel.abs() + 1)
        return rearrange(self.net(rel), "i j h -> h i j")


def alibi_bias(heads: int, n: int, device: torch.device) -> torch.Tensor:
    """(heads, n, n) ALiBi bias -slope_h * |i - j| (Press et al. 2022), slopes for a power-of-two head count and
    the interleaved extension otherwise."""
    def powers(k: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(k) - 3)))
        return [start * start**i for i in range(k)]
    if math.log2(heads).is_integer():
        slopes = powers(heads)
    else:
        p = 2 ** math.floor(math.log2(heads))
        slopes = powers(p) + powers(2 * p)[0::2][: heads - p]
    i = torch.arange(n, device=device)
    return -torch.tensor(slopes, device=device)[:, None, None] * (i[None, :] - i[:, None]).abs()


def rope_angles(head_dim: int, h: int, w: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """(h*w, head_dim/2) rotation angles of 2-D RoPE: pair 2k turns with the column at frequency k, pair 2k+1
    with the row, frequencies theta^(-4k/head_dim), k < head_dim/4."""
    freqs = theta ** (-torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim)
    idx = torch.arange(h * w, device=device)
    col, row = (idx % w).float(), (idx // w).float()
    return torch.stack([torch.outer(col, freqs), torch.outer(row, freqs)], dim=-1).flatten(1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x (B, N, H, Dh) with consecutive pairs rotated by angles (N, Dh/2), in fp32: each pair is a complex number
    multiplied by e^(i angle), one kernel where cos/sin arithmetic on strided halves and a stack take six."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (B, N, H, Dh/2)
    rotation = torch.polar(torch.ones_like(angles), angles)[:, None]  # (N, 1, Dh/2)
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


class CosineAttention(nn.Module):
    """Pre-norm self-attention on l2-normalised q and k with learned per-dimension scales, logits x 8."""

    def __init__(self, dim: int, heads: int = 8, head_dim: int = 64, causal: bool = False,
                 spatial_pos: str = "rel", position_bias: bool = False) -> None:
        super().__init__()
        if spatial_pos not in ("rel", "rope"):
            raise ValueError(f"spatial_pos must be 'rel' or 'rope', got {spatial_pos!r}")
        self.heads, self.head_dim, self.causal = heads, head_dim, causal
        self.spatial_pos, self.position_bias = spatial_pos, position_bias
        inner = heads * head_dim
        self.norm = BufferBiasLayerNorm(dim)
        self.q = nn.Linear(dim, inner, bias=False)
        self.kv = nn.Linear(dim, 2 * inner, bias=False)
        self.q_scale = nn.Parameter(torch.ones(head_dim))
        self.k_scale = nn.Parameter(torch.ones(head_dim))
        self.out = nn.Linear(inner, dim, bias=False)
        # owned by the official module, never used by self-attention (see the module docstring)
        self.context_norm = BufferBiasLayerNorm(dim)
        self.context_norm.weight.requires_grad_(False)
        self.rel_bias = ContinuousPositionBias(dim, heads) if spatial_pos == "rel" else None

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """x (B, N, D); `grid` (h, w) for a spatial block (RoPE or relative bias), None for a temporal one."""
        # as the official code: q from the normalised input, k and v from the input itself
        q = rearrange(self.q(self.norm(x)), "b n (h d) -> b n h d", h=self.heads)
        k, v = rearrange(self.kv(x), "b n (two h d) -> two b n h d", two=2, h=self.heads)
        if grid is not None and self.spatial_pos == "rope":
            angles = rope_angles(self.head_dim, *grid, device=x.device)
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        q, k, v = (rearrange(t, "b n h d -> b h n d") for t in (q, k, v))
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        bias = None
        if self.position_bias:
            n = x.shape[1]
            if grid is not None and self.rel_bias is not None:
                bias = self.rel_bias(*grid).to(q.dtype)
            elif grid is None and self.causal:
                bias = alibi_bias(self.heads, n, x.device).to(q.dtype)
            if self.causal:
                causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
                bias = (torch.zeros(n, n, dtype=q.dtype, device=x.device) if bias is None else bias).masked_fill(
                    ~causal, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=self.causal and bias is None,
                                             scale=8.0)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class WindowAttention(nn.Module):
    """Swin's window attention (Liu et al. 2021) inside non-overlapping s x s windows of an h x w grid, with a
    learned (2s-1)^2 x heads relative position table; pre-LayerNorm with a zero bias buffer; qkv without bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.norm = BufferBiasLayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + window - 1  # (2, s*s, s*s), each in [0, 2s-2]
        self.register_buffer("bias_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x (B, h*w, D) -> (B, h*w, D)."""
        h, w = grid
        s = self.window
        y = rearrange(self.norm(x), "b (nh s1 nw s2) d -> (b nh nw) (s1 s2) d", nh=h // s, s1=s, s2=s)
        q, k, v = rearrange(self.qkv(y), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        bias = rearrange(self.bias_table[self.bias_index], "i j h -> h i j").to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale head_dim^-0.5
        out = self.proj(rearrange(out, "n h l d -> n l (h d)"))
        return rearrange(out, "(b nh nw) (s1 s2) d -> b (nh s1 nw s2) d", nh=h // s, nw=w // s, s1=s)


class OmniBlock(nn.Module):
    def __init__(self, kind: str, dim: int, heads: int, head_dim: int, window: int, ff_mult: float, causal: bool,
                 causal_peg: bool, official_peg_order: bool, spatial_pos: str, position_bias: bool) -> None:
        super().__init__()
        if kind not in BLOCK_KINDS:
            raise ValueError(f"block letters must be one of {BLOCK_KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "t":
            self.peg = PEG(dim, causal_peg, official_peg_order)
            self.attn = CosineAttention(dim, heads, head_dim, causal, spatial_pos, position_bias)
        else:
            self.peg = None
            self.attn = WindowAttention(dim, window, heads)
        self.ff = GEGLUFeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, shape: tuple[int, int, int, int], temporal: bool) -> torch.Tensor:
        grid = None if temporal else shape[2:]
        if self.peg is not None:
            x = x + self.peg(x, shape, temporal)
        x = x + self.attn(x, grid)
        return x + self.ff(x)


class OmniStack(nn.Module):
    """Blocks named by letters, then a LayerNorm (`norm_out`). `temporal`: sequences run along time."""

    def __init__(self, blocks: str, dim: int, heads: int, head_dim: int, window: int = 8, ff_mult: float = 4.0,
                 temporal: bool = False, causal: bool = True, causal_peg: bool = True,
                 official_peg_order: bool = False, spatial_pos: str = "rope", position_bias: bool = False) -> None:
        super().__init__()
        self.temporal = temporal
        # the official temporal stacks are built with the default spatial_pos, "rel" (a bias they never read)
        pos = "rel" if temporal else spatial_pos
        self.blocks = nn.ModuleList(
            OmniBlock(k, dim, heads, head_dim, window, ff_mult, causal and temporal, causal_peg, official_peg_order,
                      pos, position_bias) for k in blocks)
        self.norm_out = BufferBiasLayerNorm(dim)
        for block in self.blocks:  # freeze the relative-bias MLPs the forward pass never reads
            if isinstance(block.attn, CosineAttention) and block.attn.rel_bias is not None:
                block.attn.rel_bias.requires_grad_(position_bias and not temporal)

    def forward(self, x: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, shape, self.temporal)
        return self.norm_out(x)


class OmniSpaceTime(nn.Module):
    """A spatial stack and a temporal stack over (B, T', h, w, D); `temporal_first` is the decoder's order."""

    def __init__(self, dim: int, heads: int, head_dim: int, grid: tuple[int, int], spatial_blocks: str,
                 temporal_depth: int, window: int = 8, ff_mult: float = 4.0, causal: bool = True,
                 causal_peg: bool = True, official_peg_order: bool = False, spatial_pos: str = "rope",
                 position_bias: bool = False, temporal_first: bool = False) -> None:
        super().__init__()
        h, w = grid
        if "w" in spatial_blocks and (h % window or w % window):
            raise ValueError(f"window_size {window} must divide the token grid {h} x {w}")
        common = dict(dim=dim, heads=heads, head_dim=head_dim, window=window, ff_mult=ff_mult, causal=causal,
                      causal_peg=causal_peg, official_peg_order=official_peg_order, spatial_pos=spatial_pos,
                      position_bias=position_bias)
        self.spatial = OmniStack(spatial_blocks, temporal=False, **common)
        self.temporal = OmniStack("t" * temporal_depth, temporal=True, **common)
        self.temporal_first = temporal_first

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        # contiguous: after the temporal stack (the decoder) this is a view in (b h w) t order, and each residual
        # sum would keep that layout, so every PEG and linear layer of the stack would read strided memory (the
        # decoder's spatial stack took 2.0 s against the official code's 1.65 s at 256 px, 17 frames, 1 thread)
        y = self.spatial(rearrange(x, "b t h w d -> (b t) (h w) d").contiguous(), (b, t, h, w))
        return rearrange(y, "(b t) (h w) d -> b t h w d", b=b, h=h)

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        y = self.temporal(rearrange(x, "b t h w d -> (b h w) t d"), (b, t, h, w))
        return rearrange(y, "(b h w) t d -> b t h w d", b=b, h=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_first:
            return self._spatial(self._temporal(x))
        return self._temporal(self._spatial(x))
