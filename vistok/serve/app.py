"""The `LitServer` of `vistok serve`: an encode and a decode API, the gate, the demo page and /v1/info.

`build_server` reads the model's facts once in this process (a bad --model fails here, before any worker
starts), caps each worker's torch threads so that all workers together use at most the machine's cores, and
replaces litserve's own `/` and `/info` routes with the demo page and `/v1/info`. `GET /health` is litserve's
(200 "ok" once every worker is ready) and is the one route that needs no API key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

from vistok.serve.facts import ModelFacts, model_facts
from vistok.serve.limits import Limits

STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/demo.js": ("demo.js", "text/javascript; charset=utf-8")}


@dataclass(frozen=True)
class ServeOptions:
    max_batch_size: int = 16  # 1: batching off
    batch_timeout: float = 0.0  # seconds the oldest request may wait for batch-mates (batching.py)
    workers: int = 1  # inference workers per API (encode, decode) and device
    device: str = "auto"
    api_key: str | None = None
    timeout: float = 60.0  # seconds a request may wait for a worker before a 504
    threads: int | None = None  # torch threads per worker (default: cores / all workers, at least 1)
    limits: Limits = Limits()


def load_facts(model: str) -> ModelFacts:
    """The served model's facts; raises the loader's error (FileNotFoundError, ValueError) for a bad --model."""
    from vistok.tokenizers.tokenizer import Tokenizer

    tok = Tokenizer.from_pretrained(model, map_location="cpu")
    facts = model_facts(tok)
    del tok
    return facts


def threads_per_worker(workers: int, apis: int = 2) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // (workers * apis))


def _accelerator(device: str) -> tuple[str, Any]:
    from vistok.devices import resolve_device

    dev = resolve_device(device)
    if dev == "cpu":
        return "cpu", "auto"
    if dev.startswith("cuda"):
        index = dev.partition(":")[2]
        return "cuda", ([int(index)] if index else 1)
    raise ValueError(f"--device {device!r}: vistok serve runs on cpu or cuda")


def build_server(model: str, options: ServeOptions = ServeOptions(), facts: ModelFacts | None = None):
    """-> (litserve.LitServer, ModelFacts, threads per worker)."""
    import litserve as ls
    from fastapi import Response
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from vistok import __version__
    from vistok.serve.apis import DecodeAPI, EncodeAPI
    from vistok.serve.gate import Gate

    if options.max_batch_size < 1 or options.workers < 1 or options.batch_timeout < 0:
        raise ValueError("max_batch_size and workers must be >= 1 and batch_timeout >= 0")
    facts = facts or load_facts(model)
    accelerator, devices = _accelerator(options.device)
    threads = options.threads or threads_per_worker(options.workers)
    apis = [cls(str(model), facts, threads, options.max_batch_size, options.batch_timeout)
            for cls in (EncodeAPI, DecodeAPI)]
    server = ls.LitServer(apis, accelerator=accelerator, devices=devices, workers_per_device=options.workers,
                          timeout=options.timeout, info_path="/litserve/info", disable_openapi_url=True,
                          # no fast_queue: litserve 0.2.19 ignores it, and its ZMQ path would never deliver a
                          # response if it were used (Lightning-AI/LitServe#751)
                          middlewares=[(Gate, {"facts": facts, "limits": options.limits, "api_key": options.api_key})])
    app = server.app
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) not in ("/", "/litserve/info")]
    info = {"vistok_version": __version__, "model": facts.info(), "limits": options.limits.info(),
            "batching": {"max_batch_size": options.max_batch_size, "batch_timeout": options.batch_timeout,
                         "enabled": options.max_batch_size > 1},
            "workers": {"per_api": options.workers, "torch_threads": threads, "device": options.device},
            "auth": options.api_key is not None,
            "endpoints": {"POST /v1/encode": "multipart 'image' file or JSON {image: base64}; num_tokens | "
                                             "target_psnr -> {tokens, num_tokens, vocab_size, ...}",
                          "POST /v1/decode": "JSON {tokens, steps?, guidance_scale?, seed?, format?: png|base64} "
                                             "-> image/png, or JSON {image: base64} with format=base64",
                          "GET /v1/info": "this", "GET /health": "200 once the workers are ready",
                          "GET /": "demo page"}}

    @app.get("/v1/info")
    async def v1_info() -> JSONResponse:
        return JSONResponse(info)

    pages = {path: (resources.files("vistok.serve").joinpath("static", name).read_bytes(), media)
             for path, (name, media) in STATIC.items()}

    def page(path: str):
        async def handler() -> Response:
            body, media = pages[path]
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})
        return handler

    for path in pages:  # HEAD too: uptime checks and `curl -I` ask for the page's headers only
        app.add_api_route(path, page(path), methods=["GET", "HEAD"])

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException) -> JSONResponse:  # 404, 405, litserve's 504: vistok's error shape
        return JSONResponse({"error": str(exc.detail), "field": None, "status": exc.status_code},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    return server, facts, threads
