"""Request limits of `vistok serve` and the one error type that becomes a 4xx JSON response."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MB = 1 << 20
MIN_BODY_BYTES = 16 << 10  # a smaller cap would refuse even a decode request of a few hundred token ids


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * MB  # whole request body (multipart or JSON)
    max_pixels: int = 40_000_000  # width x height read from the image header, before any pixel is decoded
    max_steps: int = 250  # sampler steps of a generative decoder (each costs a network pass per image)
    body_timeout_s: float = 30.0  # time to receive a request body (a client that stalls gets 408)
    max_guidance: float = 100.0  # |guidance_scale|
    max_frames: int = 129  # video models: frames read from an uploaded video (a longer one: its first frames)
    header_timeout_s: float = 10.0  # time to receive a request's headers (a client that stalls gets 408)

    def __post_init__(self) -> None:
        if not self.max_body_bytes >= MIN_BODY_BYTES:
            raise ValueError(f"the request body limit must be at least {MIN_BODY_BYTES // 1024} KiB "
                             f"(--max-body-mb {MIN_BODY_BYTES / MB:g}), got {self.max_body_bytes} bytes")
        for name in ("max_pixels", "max_steps", "max_frames"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("body_timeout_s", "header_timeout_s", "max_guidance"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive finite number, got {getattr(self, name)!r}")

    def info(self) -> dict[str, Any]:
        return asdict(self)


class RequestError(Exception):
    """A bad request: `status` (4xx), a message naming the problem, and the request field it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "status": self.status}
