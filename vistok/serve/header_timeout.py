"""A deadline for a request's headers: uvicorn has none (slowloris).

uvicorn (0.55) times out only an idle kept-alive connection (`timeout_keep_alive`, armed after a response); a
client that opens a connection and sends a header line every few seconds, never the blank line that ends the
headers, holds the connection forever, before any authentication. This module subclasses uvicorn's own HTTP
protocol (httptools when installed, as uvicorn's "auto" picks, else h11) to arm a timer when a connection opens and
after each response, cancelled when a request's headers are complete; when it fires the client gets a 408 JSON
body and the connection is closed. The body of an API request has its own deadline in the gate (`body_timeout_s`).
"""

from __future__ import annotations

import json
from typing import Any


def _base() -> type:
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": f"request headers not received within {seconds:g} s", "field": None,
                       "status": 408}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def protocol_with_header_timeout(seconds: float) -> type:
    """uvicorn's HTTP protocol class with a `seconds` deadline for each request's headers (pass it as
    `uvicorn.Config(http=...)`; litserve's `run` forwards it)."""
    if not seconds > 0:
        raise ValueError(f"header timeout must be > 0 seconds, got {seconds!r}")
    base = _base()
    response = _timeout_response(seconds)

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        header_timeout = seconds
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:  # httptools: a request's headers are in
            self._cancel_header_timer()
            super().on_headers_complete()

        def handle_events(self) -> None:  # h11: past IDLE, the request line and headers are in
            super().handle_events()
            import h11

            if self.conn.their_state is not h11.IDLE:
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not getattr(self, "pipeline", None):
                self._arm_header_timer()  # the next request's headers (kept alive: uvicorn's idle timeout too)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    if not hasattr(base, "on_headers_complete"):
        del HeaderTimeoutProtocol.on_headers_complete
    if not hasattr(base, "handle_events"):
        del HeaderTimeoutProtocol.handle_events
    return HeaderTimeoutProtocol


def uvicorn_options(header_timeout_s: float, keep_alive_s: float = 5.0) -> dict[str, Any]:
    """The uvicorn settings `vistok serve` passes through litserve's `run`."""
    return {"http": protocol_with_header_timeout(header_timeout_s), "timeout_keep_alive": keep_alive_s}
