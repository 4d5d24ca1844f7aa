"""Prefix decoding: encode once at N tokens, decode the first K tokens for each K of a list.

This is how every consumer of a flexible-length tokenizer measures or shows quality per token count: eval,
the token ladder, the validation step's per-K PSNR and the reconstruction grid. The lengths default to
`pow2_lengths(N)` = 1, 2, 4, ..., N.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


def pow2_lengths(n: int) -> list[int]:
    """1, 2, 4, ..., and n itself (n need not be a power of two)."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n]


def decode_prefixes(tokenizer: Any, ids: torch.Tensor, lengths: Sequence[int] | None = None,
                    **decode_kwargs: Any) -> Iterator[tuple[int, torch.Tensor]]:
    """(K, reconstruction from ids[:, :K]) for each K, decoded lazily one K at a time; ids (B, N) int64.
    `decode_kwargs` go to `tokenizer.decode` (steps, guidance_scale, seed for generative decoders)."""
    for k in pow2_lengths(ids.shape[1]) if lengths is None else lengths:
        yield k, tokenizer.decode(ids[:, :k], **decode_kwargs)


def prefix_reconstructions(tokenizer: Any, images: torch.Tensor, lengths: Sequence[int] | None = None,
                           **decode_kwargs: Any) -> Iterator[tuple[int, torch.Tensor]]:
    """`decode_prefixes` of the images' own tokens: images (B, 3, H, W) in [-1, 1] are encoded once. A
    continuous (KL) bottleneck has no ids and no prefixes: its one reconstruction, from all its latents."""
    if getattr(tokenizer, "continuous", False):
        latents = tokenizer.encode_latents(images)
        yield latents.shape[1], tokenizer.decode_latents(latents, **decode_kwargs)
        return
    yield from decode_prefixes(tokenizer, tokenizer.encode(images), lengths, **decode_kwargs)
