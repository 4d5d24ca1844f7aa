"""Request limits of `vistok serve` and the one error type that becomes a 4xx JSON response."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * MB  # whole request body (multipart or JSON)
    max_pixels: int = 40_000_000  # width x height read from the image header, before any pixel is decoded
    max_steps: int = 250  # sampler steps of a generative decoder (each costs a network pass per image)
    body_timeout_s: float = 30.0  # time to receive a request body (a client that stalls gets 408)
    max_guidance: float = 100.0  # |guidance_scale|
    max_frames: int = 129  # video models: frames read from an uploaded video (a longer one: its first frames)

    def info(self) -> dict[str, Any]:
        return asdict(self)


class RequestError(Exception):
    """A bad request: `status` (4xx), a message naming the problem, and the request field it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "status": self.status}
