"""Slow clients (issue 26): a request whose headers never complete (slowloris) gets a 408 and its connection is
closed after the header timeout; complete requests, kept-alive connections included, are served as before. A real
uvicorn server on 127.0.0.1 runs in a thread with the options `vistok serve` passes (`uvicorn_options`)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

uvicorn = pytest.importorskip("uvicorn")

from tests.serve_helpers import free_port  # noqa: E402
from vistok.serve.header_timeout import protocol_with_header_timeout, uvicorn_options  # noqa: E402

TIMEOUT = 0.6


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * TIMEOUT)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture(scope="module", params=["auto", "h11"])
def port(request):
    options = uvicorn_options(TIMEOUT)
    if request.param == "h11":  # the fallback when httptools is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol

        import vistok.serve.header_timeout as ht

        original = ht._base
        ht._base = lambda: H11Protocol
        try:
            options["http"] = protocol_with_header_timeout(TIMEOUT)
        finally:
            ht._base = original
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="error", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def read_all(s: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (seconds from now)."""
    start, data = time.monotonic(), b""
    s.settimeout(limit)
    while True:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            return data, float("inf")
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def test_headers_that_never_end_get_a_408_and_the_connection_closes(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
        time.sleep(TIMEOUT / 3)
        s.sendall(b"X-Slow: 1\r\n")  # a trickle of header lines does not extend the deadline
        data, closed = read_all(s)
    assert data.startswith(b"HTTP/1.1 408") and b"request headers not received" in data, data
    assert closed < 3, f"the connection stayed open {closed} s"


def test_a_silent_connection_is_closed_too(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        data, closed = read_all(s)
    assert closed < 3 and data.startswith(b"HTTP/1.1 408"), (closed, data)


def test_complete_requests_are_served_and_the_next_ones_headers_have_a_deadline(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(2):  # two requests on one kept-alive connection, each well within the deadline
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hi"), reply
            time.sleep(TIMEOUT / 2)
        s.sendall(b"GET / HTTP/1.1\r\n")  # a third request that stalls
        data, closed = read_all(s)
    assert data.startswith(b"HTTP/1.1 408") and closed < 3, (closed, data)


def test_a_slow_application_is_not_cut_by_the_header_deadline(port):
    """The deadline covers the headers only: it is cancelled once they are in (a request may take longer)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
