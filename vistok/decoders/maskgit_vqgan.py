"""MaskGIT's VQGAN (Chang et al. 2022, "MaskGIT: Masked Generative Image Transformer"): a conv encoder, a
1024 x 256 codebook and a conv decoder at stride 16, the tokenizer whose codes TiTok's stage 1 learns to predict
("proxy codes") and whose decoder turns TiTok's predicted soft codes into pixels.

VQGAN (Esser et al. 2021) without its attention (non-local) layers. Each resolution level is `num_res_blocks`
residual blocks (GroupNorm(32, eps 1e-6) -> SiLU -> 3x3 conv, twice, convs without bias); the encoder halves the
resolution after every level but the last (2x2 average pooling), the decoder doubles it before every level but
the first (nearest neighbour, then a 3x3 conv). Widths are `hidden_channels * channel_mult[level]`.

Faithful to the released weights (bytedance/1d-tokenizer's `maskgit-vqgan-imagenet-f16-256.bin`), quirks
included: a residual block that changes its width adds `shortcut(h)` of its own *output* h (a 1x1 conv), not a
projection of its input, so the input does not reach the output through a skip there. Module names follow the
released state dict, so its keys load as they are.

Pixels: the network computes on [0, 1] (MaskGIT's convention). `MaskGITVQGAN` takes and returns [-1, 1] and
converts; the bare `MaskGITEncoder` / `MaskGITDecoder` work in [0, 1].

Shapes: pixels (B, 3, H, W) -> latents (B, z_channels, H/16, W/16) -> ids (B, H/16 * W/16) -> pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.configurable import configurable

DEFAULT_MULT = (1, 1, 2, 2, 4)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """norm -> SiLU -> conv, twice; plus the input, or (width change) plus `nin_shortcut` of the output."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = (nn.Conv2d(out_channels, out_channels, 1, bias=False)
                             if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(h))  # the released quirk, see above


class _Level(nn.Module):
    """`block`: the residual blocks of one resolution; `upsample_conv` after a x2 upsampling (decoder)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool = False) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                   for i in range(num_blocks))
        self.upsample_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1) if upsample else None


def _check(channel_mult: tuple[int, ...] | list[int], hidden_channels: int) -> tuple[int, ...]:
    mult = tuple(int(m) for m in channel_mult)
    if not mult or any(m < 1 for m in mult) or hidden_channels < 32 or hidden_channels % 32:
        raise ValueError(f"channel_mult must be positive ints and hidden_channels a multiple of 32 (GroupNorm 32), "
                         f"got {list(channel_mult)} and {hidden_channels}")
    return mult


@configurable
class MaskGITEncoder(nn.Module):
    """[0, 1] pixels (B, C, H, W) -> latents (B, z_channels, H / 2^(levels-1), W / 2^(levels-1))."""

    def __init__(self, in_channels: int = 3, hidden_channels: int = 128,
                 channel_mult: tuple[int, ...] = DEFAULT_MULT, num_res_blocks: int = 2, z_channels: int = 256) -> None:
        super().__init__()
        mult = _check(channel_mult, hidden_channels)
        self.conv_in = nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False)
        widths = [hidden_channels * m for m in (1, *mult)]
        self.down = nn.ModuleList(_Level(widths[i], widths[i + 1], num_res_blocks) for i in range(len(mult)))
        top = widths[-1]
        self.mid = nn.ModuleList(ResnetBlock(top, top) for _ in range(num_res_blocks))
        self.norm_out = _norm(top)
        self.conv_out = nn.Conv2d(top, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@configurable
class MaskGITDecoder(nn.Module):
    """latents (B, z_channels, h, w) -> [0, 1] pixels (B, C, h * 2^(levels-1), w * 2^(levels-1)) (unclamped).

    `up[i]` is the level at width `hidden_channels * channel_mult[i]`; they run from the last to the first."""

    def __init__(self, out_channels: int = 3, hidden_channels: int = 128,
                 channel_mult: tuple[int, ...] = DEFAULT_MULT, num_res_blocks: int = 2, z_channels: int = 256) -> None:
        super().__init__()
        mult = _check(channel_mult, hidden_channels)
        widths = [hidden_channels * m for m in mult]
        self.conv_in = nn.Conv2d(z_channels, widths[-1], 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1]) for _ in range(num_res_blocks))
        self.up = nn.ModuleList(
            _Level(widths[min(i + 1, len(mult) - 1)], widths[i], num_res_blocks, upsample=i > 0)
            for i in range(len(mult)))
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.up) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if level.upsample_conv is not None:
                h = level.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(M, C) vectors, (V, C) codebook -> (M,) int64 ids of the nearest code (squared l2, expanded as
    |z|^2 + |e|^2 - 2 z.e, the released code's order of operations, so ties break the same way)."""
    d = z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None] - 2 * z @ codebook.t()
    return d.argmin(1)


@configurable
class MaskGITVQGAN(nn.Module):
    """The whole MaskGIT-VQGAN tokenizer, usable on its own (and, frozen, as TiTok's proxy-code teacher).

    `encode`: [-1, 1] pixels (B, 3, H, W) -> int64 ids (B, H/16 * W/16), row-major; `decode`: ids -> [-1, 1]
    pixels (unclamped). `from_official(path)` loads the released `maskgit-vqgan-imagenet-f16-256.bin`."""

    def __init__(self, channels: int = 3, hidden_channels: int = 128, channel_mult: tuple[int, ...] = DEFAULT_MULT,
                 num_res_blocks: int = 2, z_channels: int = 256, codebook_size: int = 1024) -> None:
        super().__init__()
        self.encoder = MaskGITEncoder(channels, hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.decoder = MaskGITDecoder(channels, hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(codebook_size, z_channels)  # the released name

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embedding.weight  # (V, z_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder((images + 1) / 2).float()  # (B, C, h, w)
        b, c, h, w = z.shape
        return nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, c), self.codebook.float()).view(b, h * w)

    def decode(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """ids (B, h*w) -> pixels (B, 3, 16h, 16w) in [-1, 1]; `grid` (h, w), square when not given."""
        b, n = ids.shape
        h, w = grid if grid is not None else (int(n**0.5), int(n**0.5))
        if h * w != n:
            raise ValueError(f"{n} ids do not fill a {h} x {w} grid; pass grid=(h, w)")
        z = self.codebook[ids].view(b, h, w, -1).permute(0, 3, 1, 2)  # (B, C, h, w)
        return self.decoder(z) * 2 - 1

    @classmethod
    def from_official(cls, path: str | Path) -> MaskGITVQGAN:
        """The released weights file (a plain state dict: `encoder.*`, `decoder.*`, `quantize.embedding.weight`),
        read with `weights_only=True`; every key must be placed and none may be missing."""
        path = Path(path)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path), device="cpu")
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # a missing, truncated or non-weights file
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: not a readable state dict ({why})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
        model = cls()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not a MaskGIT-VQGAN f16 state dict (missing keys {sorted(missing)[:8]}, "
                             f"unexpected keys {sorted(unexpected)[:8]})")
        return model.eval().requires_grad_(False)
