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


def size_refusal(part: str, size: tuple[int, int], nominal: tuple[int, int], patch_size: int, window_size: int,
                 windows: bool, architecture: str, spatial_pos: str) -> str | None:
    """Why an OmniTokenizer encoder or decoder (`part`, built for `nominal` frames) cannot take frames of `size`
    (height, width); None when it can. Other sizes need the official network with 2-D RoPE, whose rotations are
    computed for the grid at hand (the official stages 2 and 3 train on several sizes that way): vistok's
    learned positions are one grid's table, and the relative bias of `spatial_pos="rel"` is stage 1's, which the
    official trains at one size. Then whole patches, and a token grid of whole windows when there are window
    blocks (their relative tables are per window, any number of windows)."""
    h, w = size
    if (h, w) == tuple(nominal):
        return None
    if architecture != "official" or spatial_pos != "rope":
        what = ("learned absolute positions (architecture vistok)" if architecture != "official" else
                "spatial_pos 'rel' (the official stage 1's one-size network)")
        return (f"{part} takes {nominal[0]} x {nominal[1]} frames only: {what}; other sizes need architecture "
                "'official' with spatial_pos 'rope'")
    if h < 1 or w < 1 or h % patch_size or w % patch_size:
        return f"{h} x {w} is not a whole number of {part} patches (patch_size {patch_size})"
    gh, gw = h // patch_size, w // patch_size
    if windows and (gh % window_size or gw % window_size):
        return (f"the {part}'s {gh} x {gw} token grid is not a whole number of its window-attention windows "
                f"(window_size {window_size})")
    return None
