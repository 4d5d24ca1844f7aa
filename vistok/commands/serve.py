"""`vistok serve`: encode/decode over HTTP (litserve, dynamic batching) with a demo page (`vistok.serve`)."""

from __future__ import annotations

import os
import sys

from vistok.commands.args import add_device, finite_float, parser, positive_float, positive_int


def main(argv: list[str]) -> None:
    from vistok.serve.limits import MB, Limits

    d = Limits()
    p = parser("vistok serve", "Serve encode/decode over HTTP (litserve, dynamic batching) with a demo page at /.")
    p.add_argument("--model", required=True, help="export directory (or a `vistok fit` .ckpt)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 or :: need --api-key or --insecure)")
    p.add_argument("--port", type=positive_int, default=8000, help="port (1024-65535, default 8000)")
    p.add_argument("--max-batch-size", type=positive_int, default=16, help="requests per batch (1: batching off)")
    p.add_argument("--batch-timeout", type=finite_float, default=0.0,
                   help="seconds the oldest request of a batch may wait for more to join it while the worker is "
                        "idle (default 0: an idle worker starts at once; requests that arrive while it is busy "
                        "form the next batch)")
    p.add_argument("--workers", type=positive_int, default=1, help="inference workers per endpoint and device")
    add_device(p)
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every endpoint but /health (or set VISTOK_API_KEY)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: cores / (2 x workers), at least 1)")
    p.add_argument("--max-body-mb", type=positive_float, default=d.max_body_bytes / MB,
                   help=f"largest request body in MiB (default {d.max_body_bytes / MB:g})")
    p.add_argument("--max-pixels", type=positive_int, default=d.max_pixels,
                   help=f"largest image in pixels, read from its header before decoding (default {d.max_pixels})")
    p.add_argument("--max-steps", type=positive_int, default=d.max_steps, help="largest sampler `steps` accepted")
    p.add_argument("--timeout", type=positive_float, default=60.0,
                   help="seconds a request may wait for a worker before a 504 (default 60)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    a = p.parse_args(argv)
    if a.batch_timeout < 0:
        raise ValueError(f"--batch-timeout must be >= 0 seconds, got {a.batch_timeout:g}")
    if not 1024 <= a.port <= 65535:
        raise ValueError(f"--port must be in 1024..65535, got {a.port}")
    api_key = a.api_key or os.environ.get("VISTOK_API_KEY") or None
    from vistok.serve.bind import check_bind

    host = check_bind(a.host, api_key, a.insecure)

    from vistok.serve.app import ServeOptions, build_server

    limits = Limits(max_body_bytes=int(a.max_body_mb * MB), max_pixels=a.max_pixels, max_steps=a.max_steps)
    options = ServeOptions(max_batch_size=a.max_batch_size, batch_timeout=a.batch_timeout, workers=a.workers,
                           device=a.device, api_key=api_key, timeout=a.timeout, threads=a.threads, limits=limits)
    server, facts, threads = build_server(a.model, options)
    shown = "[::]" if host == "::" else host
    wait = f"waiting up to {a.batch_timeout * 1000:g} ms for them" if a.batch_timeout else "no waiting for them"
    batching = (f"batching up to {a.max_batch_size} requests, {wait}"
                if a.max_batch_size > 1 else "batching off")
    print(f"vistok serve: {a.model} ({facts.image_size} px, 1..{facts.max_tokens} tokens, {facts.codebook_size} codes,"
          f" {facts.decoder} decoder) on http://{shown}:{a.port}/ ; {batching}; {a.workers} worker(s) per endpoint x "
          f"{threads} torch thread(s){'; API key required' if api_key else ''}", file=sys.stderr, flush=True)
    from vistok.serve.header_timeout import uvicorn_options
    from vistok.serve.lifecycle import run_server

    status = run_server(server, host=host, port=a.port, generate_client_file=False, num_api_servers=1,
                        log_level=a.log_level, **uvicorn_options(limits.header_timeout_s))
    if status:
        raise SystemExit(status)
