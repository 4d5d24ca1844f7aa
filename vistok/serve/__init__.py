"""`vistok serve`: encode/decode over HTTP on litserve, with dynamic batching and a static demo page.

One concept per file:
  facts.py     what the server needs to know about the model (the one place that reads the tokenizer's shape)
  limits.py    request limits (body bytes, pixels, tokens) and the 4xx error type
  requests.py  parsing and validating one request into a canonical job (pure functions, no HTTP)
  gate.py      ASGI middleware: body cap, Bearer auth, and validation *before* a request reaches a batch
  apis.py      the two litserve `LitAPI`s (encode, decode) that run batches in the inference workers
  app.py       the `LitServer`: routes (/, /v1/info, /health), workers, threads per worker
  command.py   the `vistok serve` command line
  static/      the demo page (plain HTML + JS, no build step)

Importing this package imports neither torch nor litserve.
"""
