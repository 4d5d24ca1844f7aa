"""What the server needs to know about a model, read from the tokenizer in one place.

`model_facts` is the only function of `vistok.serve` that reads the tokenizer's shape: its input spec (square
side, channels, frames rule: "1" for an image model, e.g. "1+4k" or "17" for a video model), `max_tokens`,
`codebook_size`, and for a space-time grid video model the tokens per latent frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    image_size: int  # square side the model takes (images of another size are resized and centre-cropped)
    channels: int
    max_tokens: int  # N: any prefix 1..N decodes
    codebook_size: int  # V: ids are in 0..V-1
    decoder: str  # "pixel" (deterministic) or "rectified-flow" (generative: steps/guidance_scale/seed matter)
    default_steps: int | None  # a generative decoder's default sampler steps
    special_tokens: dict[str, int] = field(default_factory=dict)  # bos/eos/pad/mask ids after the codebook
    vocab_size: int = 0  # codebook + special tokens (as tokens.json)
    order: str = "fixed-length"
    frames: str = "1"  # the input spec's frames rule: "1" for images; a video model takes video files
    frame_tokens: int | None = None  # h * w of a space-time grid video model (its ids are whole latent frames)
    token_grid: tuple[int, ...] = ()  # tokens.json's token_grid: (T', h, w) of the clip length built for, or (N,)

    @property
    def video(self) -> bool:
        return self.frames != "1"

    @property
    def bits_per_token(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    def token_bytes(self, k: int) -> float:
        """Bytes that k ids take, packed at ceil(log2 V) bits each."""
        return k * self.bits_per_token / 8

    def info(self) -> dict[str, Any]:
        """The model half of GET /v1/info."""
        d = asdict(self)
        d["input"] = {"channels": self.channels, "height": self.image_size, "width": self.image_size,
                      "frames": 1 if not self.video else self.frames,
                      "resize": "shorter side to height (bicubic), centre crop"}
        d["video"] = self.video
        d["token_grid"] = list(self.token_grid)
        d["bits_per_token"] = self.bits_per_token
        return d


def model_facts(tok: Any) -> ModelFacts:
    """The facts of a loaded `Tokenizer`."""
    from vistok.token_spec import token_spec

    spec = token_spec(tok)
    generative = tok.decoder.generative
    return ModelFacts(
        image_size=int(tok.input_spec.side),
        channels=int(tok.input_spec.channels),
        max_tokens=int(tok.max_tokens),
        codebook_size=int(tok.codebook_size),
        decoder="rectified-flow" if generative else "pixel",
        default_steps=tok.decoder.default_steps,
        special_tokens=dict(spec["special_tokens"]),
        vocab_size=int(spec["vocab_size"]),
        order=str(spec["order"]),
        frames=tok.input_spec.frames,
        frame_tokens=tok.frame_tokens,
        token_grid=tuple(spec["token_grid"]),
    )
