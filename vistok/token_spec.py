"""tokens.json: what a downstream model needs to know about a tokenizer's tokens and inputs.

`{"codebook_size", "vocab_size", "max_tokens", "order", "special_tokens": {bos, eos, pad, mask},
  "input": {"channels", "height", "width", "frames"}, "image_size" (square image models only, for readers of
  older exports), "token_dtype", "token_grid"}`. Special ids follow the codebook (docs/architecture.md#tensors).

`token_grid` is the layout of one input's ids: `[N]` for a 1D tokenizer, `[T', h, w]` for a space-time grid
tokenizer (ids time-major), given for a clip of `token_grid_frames` frames; other clip lengths follow the frames
rule (T' = 1 + (T - 1) / t for T = 1 + t*k), and `max_tokens` is that clip's token count.
"""

from __future__ import annotations

from typing import Any

from vistok.input_spec import InputSpec, image_hw

SPECIAL_TOKENS = ("bos", "eos", "pad", "mask")


def token_spec(tokenizer: Any) -> dict[str, Any]:
    """The tokens.json content of a `Tokenizer`."""
    v = tokenizer.codebook_size
    inputs: InputSpec = tokenizer.input_spec
    spec: dict[str, Any] = {
        "codebook_size": v,
        "vocab_size": v + len(SPECIAL_TOKENS),
        "max_tokens": tokenizer.max_tokens,
        "order": "coarse-to-fine" if tokenizer.token_dropout is not None else "fixed-length",
        "special_tokens": {name: v + i for i, name in enumerate(SPECIAL_TOKENS)},
        "input": inputs.to_json(),
        "token_dtype": "uint16" if v <= 65536 else "int32",
        "token_grid": list(tokenizer.token_grid()),
    }
    order = tokenizer.encoder.token_order
    if order is not None:
        spec["order"] = order
    if len(spec["token_grid"]) > 1:
        spec["token_grid_axes"] = ["time", "height", "width"]
        spec["token_grid_frames"] = tokenizer.encoder.num_frames
    if inputs.is_square and not inputs.is_video:
        spec["image_size"] = inputs.height  # kept for readers of older exports
    return spec


def input_spec(spec: dict[str, Any]) -> InputSpec:
    """The `InputSpec` recorded in a tokens.json (or a manifest's copy of it); older ones hold only
    `image_size` (square RGB images)."""
    if "input" in spec:
        return InputSpec.from_json(spec["input"])
    if "image_size" not in spec:
        raise ValueError("tokens.json has neither an 'input' block nor an 'image_size'")
    h, w = image_hw(spec["image_size"])
    return InputSpec(3, h, w, "1")
