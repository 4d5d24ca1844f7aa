"""Deterministic weights for the TiTok / One-D-Piece fixtures, computed from each key's name alone.

The official models at their smallest width ("small", 512 wide, 8 + 8 layers, plus the 30 M-parameter MaskGIT-VQGAN
decoder) have ~85 M parameters: far too many to commit. So the fixtures commit the state dict's layout (key names
and shapes), the inputs and the official outputs, and every weight is a pure function of (key, position): an
integer hash, no random number generator, so the same numbers come out on every machine and torch version.
`scripts/make_titok_fixtures.py` loads these weights into the official model; the tests load them through our
importer. Only torch is imported here (the fixture script runs in a bare environment with the official code).

Scales keep activations near unit variance: a weight of fan-in f is uniform in +-sqrt(3 / f) (embeddings and
position tables too, f = their width), a 1-D `weight` (a norm's gain) is 1 +- 0.2, a bias is +- 0.05.
"""

from __future__ import annotations

import zlib

import torch

MASK32 = 0xFFFFFFFF


def _hash(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing hash on int64 tensors (values stay below 2^60: no overflow)."""
    for _ in range(3):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    return (x >> 16) ^ x


PERIOD = 65521  # a prime: rows of any official width start at different phases of the table


def uniform(key: str, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Values in [-1, 1) of `shape`, a function of `key` and the position only (float32). A table of PERIOD
    hashed values per key, read cyclically (hashing 85 M positions one by one is slow on a busy CPU)."""
    n = 1
    for s in shape:
        n *= int(s)
    seed = zlib.crc32(key.encode()) & MASK32
    table = (_hash((torch.arange(min(n, PERIOD), dtype=torch.int64) * 0x9E3779B1 + seed) & MASK32).double()
             / 2**31 - 1).float()
    if n <= PERIOD:
        return table.reshape(tuple(shape))
    return table.repeat(n // PERIOD + 1)[:n].reshape(tuple(shape))


def fixture_tensor(key: str, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    u = uniform(key, shape)
    if len(shape) >= 2:  # a layer's weight: fan-in = all but the first dim; a table or learned tokens: width
        fan_in = u.numel() // int(shape[0]) if key.endswith(".weight") else int(shape[-1])
        return u * (3.0 / fan_in) ** 0.5
    if len(shape) == 1 and key.endswith("weight"):
        return 1 + 0.2 * u
    return 0.05 * u


def fixture_state_dict(layout: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """{key: shape} -> {key: deterministic tensor}."""
    return {k: fixture_tensor(k, tuple(shape)) for k, shape in layout.items()}


def fingerprint(state: dict[str, torch.Tensor]) -> list[float]:
    """Two numbers that change if any generated weight does: the sum and the sum of |x| over all tensors."""
    total = sum(float(t.double().sum()) for t in state.values())
    absolute = sum(float(t.double().abs().sum()) for t in state.values())
    return [total, absolute]
