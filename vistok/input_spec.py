"""`InputSpec`: what a tokenizer takes in: channels, frames rule, height and width (docs/architecture.md#tensors).

Images are (B, C, H, W) and have the frames rule "1"; videos are (B, C, T, H, W) with T following a rule of
the form "a + bk" (k = 0, 1, 2, ...), e.g. "1 + 4k" for a causal video tokenizer whose first frame is encoded
alone (Cosmos, OmniTokenizer: T = 1, 5, 9, 17, ...). Every encoder exposes one as `encoder.input_spec`, the
`Tokenizer` checks its inputs against it in one place, and an export records it in tokens.json's `input`
block, which export, eval, shards and serving read instead of a single `image_size`.

No torch import here: the spec is read by data and serving code that need not load a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_RULE = re.compile(r"^\s*(\d+)\s*(?:\+\s*(\d+)\s*k\s*)?$")


def _parse_rule(rule: str) -> tuple[int, int]:
    """"1" -> (1, 0); "1+4k" -> (1, 4): T = a + b*k for k >= 0."""
    m = _RULE.match(str(rule))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ValueError(f"frames rule must be 'a' or 'a + bk' with a >= 1, b >= 1 (e.g. '1', '1 + 4k'), "
                         f"got {rule!r}")
    return int(m.group(1)), int(m.group(2) or 0)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def image_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A constructor's `image_size` (an int for square images, or (height, width)) -> (height, width)."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        return _positive("image height", image_size[0]), _positive("image width", image_size[1])
    side = _positive("image_size", image_size)
    return side, side


@dataclass(frozen=True)
class InputSpec:
    channels: int
    height: int
    width: int
    frames: str = "1"  # the frames rule: "1" for images, "a + bk" for videos

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            _positive(name, getattr(self, name))
        start, step = _parse_rule(self.frames)
        object.__setattr__(self, "frames", str(start) if step == 0 else f"{start}+{step}k")

    # --- facts ---------------------------------------------------------------------------------------------
    @property
    def is_video(self) -> bool:
        return self.frames != "1"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def is_square(self) -> bool:
        return self.height == self.width

    @property
    def side(self) -> int:
        """The side of a square input; a ValueError for a non-square one (for code that crops squares)."""
        if not self.is_square:
            raise ValueError(f"this needs square inputs; the model takes {self.height} x {self.width} "
                             "(height x width)")
        return self.height

    def frames_ok(self, t: int) -> bool:
        start, step = _parse_rule(self.frames)
        return t == start if step == 0 else t >= start and (t - start) % step == 0

    def frame_counts(self, up_to: int) -> list[int]:
        """The valid T <= up_to, smallest first."""
        return [t for t in range(1, up_to + 1) if self.frames_ok(t)]

    def shape_text(self) -> str:
        """The expected batch shape in words, e.g. "(B, 3, 32, 32)" or "(B, 3, T, 64, 64) with T = 1+4k"."""
        if not self.is_video:
            return f"(B, {self.channels}, {self.height}, {self.width})"
        examples = ", ".join(str(t) for t in self.frame_counts(20)[:4])
        return f"(B, {self.channels}, T, {self.height}, {self.width}) with T = {self.frames} ({examples}, ...)"

    # --- the check -----------------------------------------------------------------------------------------
    def check(self, x: Any) -> None:
        """Raise a ValueError naming the expected shape unless `x` (anything with `.shape`) fits this spec."""
        shape = tuple(getattr(x, "shape", ()))
        if self.is_video:
            ok = (len(shape) == 5 and shape[1] == self.channels and shape[3:] == self.size
                  and self.frames_ok(int(shape[2])))
        else:
            ok = len(shape) == 4 and shape[1] == self.channels and shape[2:] == self.size
        if not ok:
            kind = "videos" if self.is_video else "images"
            raise ValueError(f"{kind} must have shape {self.shape_text()}, got {shape}")

    # --- tokens.json ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"channels": self.channels, "height": self.height, "width": self.width, "frames": self.frames}

    @classmethod
    def from_json(cls, block: Any) -> InputSpec:
        """The `input` block of tokens.json (`vistok.token_spec.input_spec` reads older files too)."""
        if not isinstance(block, dict):
            raise ValueError(f"tokens.json 'input' must be an object, got {block!r}")
        try:
            return cls(block["channels"], block["height"], block["width"], str(block.get("frames", "1")))
        except KeyError as e:
            raise ValueError(f"tokens.json 'input' block is missing {e}") from None
