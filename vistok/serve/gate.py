"""The gate in front of litserve: auth, body cap, and validation before a request can join a batch.

A pure ASGI middleware (no BaseHTTPMiddleware: it buffers nothing it does not bound). For every request:
  1. with an API key, every API route (/v1/..., litserve's own) needs `Authorization: Bearer KEY` (else 401);
     only /health and the demo page's two static files (no data in them; a browser cannot add a header to a
     page load, so the page asks for the key and sends it with its API calls) are open;
  2. POST /v1/encode and /v1/decode: the body is read up to `max_body_bytes` (a larger Content-Length is refused
     before reading, a stream that grows past it is cut off: 413) within `body_timeout_s` (else 408);
  3. the body is parsed and validated (`requests.py`; the image is decoded in a thread, after its header's pixel
     count was checked) into a canonical JSON job, which replaces the body passed to litserve's endpoint.
A bad request is answered here with a 4xx JSON body naming the problem and never reaches an inference worker,
so it can never fail the other requests of a batch.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from vistok.serve.facts import ModelFacts
from vistok.serve.limits import Limits, RequestError
from vistok.serve.requests import decode_job, encode_from_form, encode_from_json, parse_json

log = logging.getLogger("vistok.serve")
ENCODE, DECODE = "/v1/encode", "/v1/decode"
OPEN_PATHS = ("/health", "/", "/demo.js")  # without the API key: readiness probes, the static demo page


async def send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


class Gate:
    def __init__(self, app: Any, facts: ModelFacts, limits: Limits, api_key: str | None = None) -> None:
        self.app, self.facts, self.limits, self.api_key = app, facts, limits, api_key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        open_path = path in OPEN_PATHS and scope.get("method") in ("GET", "HEAD")
        if self.api_key and not open_path and not self._authorized(headers.get("authorization", "")):
            await send_json(send, 401, {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                        "field": None, "status": 401},
                            [(b"www-authenticate", b'Bearer realm="vistok"')])
            return
        if scope.get("method") != "POST" or path not in (ENCODE, DECODE):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(headers, receive)
            job = await self._validate(path, headers, body, scope)
        except RequestError as e:
            await send_json(send, e.status, e.body())
            return
        except Exception:  # a bug, not the client's fault: still vistok's JSON error shape, and a log entry
            log.exception("unexpected error validating %s", path)
            await send_json(send, 500, {"error": "internal error while validating the request (see the server's "
                                                 "log)", "field": None, "status": 500})
            return
        await self._forward(scope, receive, send, json.dumps(job).encode())

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    async def _read_body(self, headers: dict[str, str], receive: Any) -> bytes:
        cap = self.limits.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise RequestError(400, f"bad Content-Length {length!r}") from None
            if declared > cap:
                raise RequestError(413, f"request body of {declared} bytes is larger than the limit of {cap} bytes")
        chunks, total = [], 0

        async def read() -> None:
            nonlocal total
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestError(400, "client disconnected before sending the whole body")
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > cap:
                    raise RequestError(413, f"request body is larger than the limit of {cap} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read(), self.limits.body_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(408, f"request body not received within {self.limits.body_timeout_s:g} s") from None
        return b"".join(chunks)

    async def _validate(self, path: str, headers: dict[str, str], body: bytes, scope: dict[str, Any]) -> dict:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if path == DECODE:
            if query:
                raise RequestError(400, f"/v1/decode takes a JSON body, not query parameters ({', '.join(query)})")
            want_json = "application/json" in headers.get("accept", "") and "image/png" not in headers.get("accept", "")
            return decode_job(parse_json(body), self.facts, self.limits, want_json)
        if ctype == "multipart/form-data":
            form = await self._form(scope, body)
            return await asyncio.to_thread(encode_from_form, form, query, self.facts, self.limits)
        if ctype in ("application/json", "") or ctype.endswith("+json"):
            return await asyncio.to_thread(encode_from_json, body, query, self.facts, self.limits)
        raise RequestError(415, f"Content-Type {ctype!r} is not accepted: send multipart/form-data with an 'image' "
                                "file, or application/json with a base64 'image'")

    async def _form(self, scope: dict[str, Any], body: bytes) -> dict[str, Any]:
        """Parse a multipart body (already bounded) with starlette's parser; files become bytes."""
        from starlette.datastructures import UploadFile
        from starlette.requests import Request

        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, replay).form(max_files=2, max_fields=10)
        except Exception as e:  # MultiPartException, a bad boundary, ...
            raise RequestError(400, f"malformed multipart form ({getattr(e, 'message', None) or e})") from None
        out: dict[str, Any] = {}
        try:
            for name, value in form.multi_items():
                if name in out:
                    raise RequestError(400, f"form field {name!r} is given twice", name)
                out[name] = await value.read() if isinstance(value, UploadFile) else value
        finally:
            await form.close()
        return out

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any, job: bytes) -> None:
        """Pass the canonical job to litserve's endpoint as a JSON body."""
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(job)).encode())]
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": job, "more_body": False}
            return await receive()  # later calls: wait for the client's disconnect as usual

        await self.app({**scope, "headers": headers}, replay, send)
