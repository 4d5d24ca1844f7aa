"""The options shared by OmniTokenizer's encoder and decoder (`vistok.tokenizers.omni`, `vistok.decoders.omni`):
which architecture, which temporal-PEG order, the official block letters."""

from __future__ import annotations

ARCHITECTURES = ("vistok", "official")
PEG_ORDERS = ("causal", "official")
# the official temporal attention is causal over the whole past: a chunk needs every earlier latent frame
UNBOUNDED_CONTEXT = 1 << 30


def check_architecture(architecture: str, peg_order: str, linear_path: bool) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if peg_order not in PEG_ORDERS:
        raise ValueError(f"peg_order must be one of {PEG_ORDERS}, got {peg_order!r}")
    if architecture == "official" and linear_path:
        raise ValueError("linear_path is an option of the vistok architecture, not of the official one")


def block_letters(spatial_blocks: list[str]) -> str:
    """["full", "window", ...] -> the official block letters "tw..." ("t" full attention, "w" window)."""
    letters = {"full": "t", "window": "w"}
    bad = [k for k in spatial_blocks if k not in letters]
    if bad:
        raise ValueError(f"spatial_blocks entries must be 'full' or 'window', got {bad}")
    return "".join(letters[k] for k in spatial_blocks)
