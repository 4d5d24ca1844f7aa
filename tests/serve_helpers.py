"""Helpers of the serve tests: a bounded readiness wait and a tiny urllib client for a server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 120  # bound on a server's start (workers import torch and load the model)


def wait_healthy(get, timeout: float = STARTUP_S, proc=None) -> None:
    """Poll GET /health (via `get(path) -> status`) until 200; fail early if the server process `proc` ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy (see its log)")
        try:
            if get("/health") == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server not healthy within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    def __init__(self, port: int, key: str) -> None:
        self.base, self.key = f"http://127.0.0.1:{port}", key

    def request(self, path: str, body: bytes | None = None, headers: dict | None = None, key: str | None = "default",
                timeout: float = 30) -> tuple[int, bytes, dict]:
        headers = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)
