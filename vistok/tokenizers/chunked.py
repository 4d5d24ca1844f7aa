"""Chunked encoding and decoding of long clips for causal space-time tokenizers (`vistok.tokenizers.omni`).

A chunk of `chunk` latent frames is run together with the `context` latent frames before it (re-encoding the
previous frames as context, as causal video tokenizers do for long clips); only the chunk's own outputs are
kept. Every output of the networks depends on at most `context` earlier latent frames (causal, windowed
temporal attention), so the tokens and pixels equal those of a whole-clip pass (up to float rounding), while
the activations held at once are those of `chunk + context` latent frames, whatever the clip's length.
The clip tensor itself is still one tensor in memory (the input of an encode, the output of a decode, written
chunk by chunk into one preallocated tensor); a streaming reader would feed chunks instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vistok.nn.patch3d import frame_range, latent_frames


def check_chunk(chunk: int, network: nn.Module | None = None) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of latent frames, got {chunk!r}")
    if network is not None and not getattr(network, "causal_in_time", True):
        raise ValueError(f"this {type(network).__name__} is not causal in time (OmniTokenizer's official temporal "
                         "PEG order, peg_order='official'): later frames change earlier outputs, so a chunked pass "
                         "would not equal a whole one; pass whole clips (chunk=None)")
    return chunk


def encode_chunked(encoder: nn.Module, x: torch.Tensor, chunk: int,
                   quantize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """x (B, C, T, H, W), T = 1 + t*k -> (B, T' * h * w, d), as `encoder(x)`, `chunk` latent frames at a time.
    `quantize` (z (B, n, d) -> ids (B, n)) is applied to each chunk's outputs, so the quantizer's distance
    tables are a chunk's too; then the result is the ids (B, T' * h * w)."""
    check_chunk(chunk, encoder)
    t, ctx, per = encoder.temporal_patch, encoder.context, encoder.tokens_per_frame
    n = latent_frames(x.shape[2], t)
    out = None  # (B, n * per, d) or ids (B, n * per), filled chunk by chunk
    for s in range(0, n, chunk):
        e, c0 = min(n, s + chunk), max(0, s - ctx)
        a, b = frame_range(c0, e, t)
        z = encoder(x[:, :, a:b], starts_video=c0 == 0)  # (B, (e - c0) * h * w, d)
        z = z[:, (s - c0) * per:]
        z = z if quantize is None else quantize(z)
        if out is None:
            out = z.new_empty(z.shape[0], n * per, *z.shape[2:])
        out[:, s * per:e * per] = z  # a copy: the chunk's context outputs are freed with z
        del z  # before the next chunk's pass, not after it
    return out


def decode_chunked(decoder: nn.Module, codes: torch.Tensor, chunk: int) -> torch.Tensor:
    """codes (B, T' * h * w, d) -> (B, C, T, H, W), as `decoder(codes)`, `chunk` latent frames at a time."""
    check_chunk(chunk, decoder)
    t, ctx, per = decoder.temporal_patch, decoder.context, decoder.tokens_per_frame
    n = codes.shape[1] // per
    out = None  # (B, C, T, H, W), filled chunk by chunk
    for s in range(0, n, chunk):
        e, c0 = min(n, s + chunk), max(0, s - ctx)
        y = decoder(codes[:, c0 * per:e * per], starts_video=c0 == 0)  # frames of latent frames [c0, e)
        a, _ = frame_range(c0, e, t)
        first, last = frame_range(s, e, t)
        if out is None:
            out = y.new_empty(*y.shape[:2], frame_range(0, n, t)[1], *y.shape[3:])
        # A copy into the clip: keeping a slice of y would hold each chunk's context frames too, (chunk + context)
        # / chunk times the clip (5x with 4 + 16), and a final torch.cat would hold the clip twice.
        out[:, :, first:last] = y[:, :, first - a:]
        del y  # before the next chunk's pass, not after it
    return out
