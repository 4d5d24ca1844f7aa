"""`vistok serve`: every endpoint and bad input in-process (litserve's workers + FastAPI's TestClient, as
litserve's own tests run it), batching without mix-ups, a bad request inside a batch, the sampler grouping of a
generative decoder, and one real server process on loopback (auth, no client.py, clean stop).

Every request loop is bounded in count and time; only 127.0.0.1 is used."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from tests.serve_helpers import ROOT, Live, free_port, wait_healthy  # noqa: E402
from vistok.data.images import load_images, tensor_to_uint8  # noqa: E402
from vistok.serve.apis import BATCH_HEADER  # noqa: E402
from vistok.serve.app import ServeOptions, build_server  # noqa: E402
from vistok.serve.limits import Limits  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402
from vistok.tokenizers.tokenizer import Tokenizer  # noqa: E402

LIMITS = Limits(max_body_bytes=200_000, max_pixels=1_000_000, max_steps=8)


def png_bytes(h: int = 48, w: int = 64, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (a decompression bomb: a few bytes, gigabytes once decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("serve") / "m")


@pytest.fixture(scope="module")
def tok(model_dir) -> Tokenizer:
    return Tokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def client(model_dir):
    """An in-process server with batching on (up to 8 requests, 0.2 s to gather them)."""
    from fastapi.testclient import TestClient
    from litserve.utils import wrap_litserve_start

    server, _, _ = build_server(str(model_dir), ServeOptions(max_batch_size=8, batch_timeout=0.2, device="cpu",
                                                             threads=1, limits=LIMITS, timeout=60))
    with wrap_litserve_start(server) as s, TestClient(s.app) as c:
        wait_healthy(lambda p: c.get(p).status_code)
        yield c


def encode_direct(tok: Tokenizer, png: bytes, k: int | None = None) -> list[int]:
    return tok.encode(load_images(Image.open(io.BytesIO(png)), tok.image_size), num_tokens=k)[0].tolist()


def decode_direct(tok: Tokenizer, ids: list[int], **sampling) -> np.ndarray:
    return tensor_to_uint8(tok.decode([torch.tensor(ids)], **sampling)[0])


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- endpoints ---------------------------------------------------------------------------------------------------

def test_encode_multipart_json_and_target_psnr(client, tok):
    png = png_bytes()
    r = client.post("/v1/encode?num_tokens=4", files={"image": ("a.png", png, "image/png")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["tokens"] == encode_direct(tok, png, 4)  # resized + centre-cropped exactly as load_images does
    assert out["num_tokens"] == 4 and out["codebook_size"] == tok.codebook_size
    assert out["vocab_size"] == tok.codebook_size + 4 and out["bytes"] == 4 * 10 / 8  # 1000 codes: 10 bits
    assert out["resized"] is True and out["source"]["width"] == 64 and out["source"]["height"] == 48

    r = client.post("/v1/encode", json={"image": base64.b64encode(png).decode()})  # default: all N tokens
    assert r.status_code == 200 and r.json()["tokens"] == encode_direct(tok, png)
    r = client.post("/v1/encode", json={"image": "data:image/png;base64," + base64.b64encode(png).decode(),
                                        "num_tokens": 2})
    assert r.json()["tokens"] == encode_direct(tok, png, 2)
    r = client.post("/v1/encode", files={"image": ("a.png", png)}, data={"num_tokens": "3"})
    assert r.json()["tokens"] == encode_direct(tok, png, 3)

    r = client.post("/v1/encode", json={"image": base64.b64encode(png).decode(), "target_psnr": 5.0})
    assert r.status_code == 200, r.text
    out = r.json()
    images = load_images(Image.open(io.BytesIO(png)), tok.image_size)
    assert out["tokens"] == tok.encode_adaptive(images, 5.0)[0].tolist()
    assert out["target_psnr"] == 5.0 and out["reached"] is True and out["psnr"] >= 5.0

    same = png_bytes(32, 32)  # already the model's size: not resized
    assert client.post("/v1/encode", files={"image": ("b.png", same)}).json()["resized"] is False


def test_decode_png_and_base64(client, tok):
    ids = [5, 17, 999]
    r = client.post("/v1/decode", json={"tokens": ids})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert np.array_equal(png_pixels(r.content), decode_direct(tok, ids))
    r = client.post("/v1/decode", json={"tokens": ids, "format": "base64"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    out = r.json()
    assert out["num_tokens"] == 3 and np.array_equal(png_pixels(base64.b64decode(out["image"])),
                                                     decode_direct(tok, ids))
    r = client.post("/v1/decode", json={"tokens": ids}, headers={"Accept": "application/json"})
    assert r.headers["content-type"] == "application/json" and "image" in r.json()


def test_info_health_and_demo_page(client, tok):
    info = client.get("/v1/info").json()
    m = info["model"]
    assert (m["image_size"], m["max_tokens"], m["codebook_size"]) == (tok.image_size, tok.max_tokens,
                                                                       tok.codebook_size)
    assert m["decoder"] == "pixel" and m["special_tokens"] == {"bos": 1000, "eos": 1001, "pad": 1002, "mask": 1003}
    assert m["input"] == {"channels": 3, "height": 32, "width": 32, "frames": 1,
                          "resize": "shorter side to height (bicubic), centre crop"}
    assert info["batching"]["max_batch_size"] == 8 and info["limits"]["max_pixels"] == LIMITS.max_pixels
    assert client.get("/health").text == "ok"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'type="range"' in page.text and "demo.js" in page.text
    assert "/v1/decode" in client.get("/demo.js").text
    assert client.get("/info").status_code == 404  # litserve's own /info is not exposed


# --- bad input ---------------------------------------------------------------------------------------------------

B64 = base64.b64encode(png_bytes()).decode()
BAD_REQUESTS = [
    # (name, path, kwargs for client.post, expected status, words in the error)
    ("not an image", "/v1/encode", {"files": {"image": ("a.png", b"this is not an image")}}, 415, "not a readable"),
    ("truncated image", "/v1/encode", {"files": {"image": ("a.png", png_bytes()[:200])}}, 415, "image"),
    ("decompression bomb", "/v1/encode", {"files": {"image": ("b.png", bomb_png(100_000, 100_000))}}, 413,
     "pixels"),
    ("over max_pixels", "/v1/encode", {"files": {"image": ("b.png", bomb_png(2000, 1000))}}, 413, "megapixels"),
    ("malformed JSON", "/v1/encode", {"content": b'{"image": ', "headers": {"content-type": "application/json"}},
     400, "malformed JSON"),
    ("JSON not an object", "/v1/decode", {"json": [1, 2, 3]}, 400, "object"),
    ("bad base64", "/v1/encode", {"json": {"image": "%%%not base64%%%"}}, 400, "base64"),
    ("image not a string", "/v1/encode", {"json": {"image": 12}}, 400, "base64 string"),
    ("missing image", "/v1/encode", {"json": {"num_tokens": 2}}, 400, "missing field 'image'"),
    ("missing form image", "/v1/encode", {"files": {"num_tokens": (None, "2")}}, 400, "missing form field 'image'"),
    ("image as text field", "/v1/encode", {"files": {"image": (None, "abc")}}, 400, "file upload"),
    ("url-encoded form", "/v1/encode", {"data": {"num_tokens": "2"}}, 415, "multipart/form-data"),
    ("num_tokens too large", "/v1/encode", {"json": {"image": B64, "num_tokens": 9}}, 400, "1..8"),
    ("num_tokens zero in query", "/v1/encode?num_tokens=0", {"json": {"image": B64}}, 400, "1..8"),
    ("num_tokens not int", "/v1/encode", {"json": {"image": B64, "num_tokens": "four"}}, 400, "integer"),
    ("num_tokens float", "/v1/encode", {"json": {"image": B64, "num_tokens": 2.5}}, 400, "integer"),
    ("num_tokens bool", "/v1/encode", {"json": {"image": B64, "num_tokens": True}}, 400, "integer"),
    ("num_tokens text in query", "/v1/encode?num_tokens=abc", {"json": {"image": B64}}, 400, "integer"),
    ("both budgets", "/v1/encode", {"json": {"image": B64, "num_tokens": 2, "target_psnr": 20}}, 400, "not both"),
    ("target_psnr negative", "/v1/encode", {"json": {"image": B64, "target_psnr": -3}}, 400, "> 0"),
    ("target_psnr not a number", "/v1/encode", {"json": {"image": B64, "target_psnr": "high"}}, 400, "number"),
    ("unknown field", "/v1/encode", {"json": {"image": B64, "num_token": 2}}, 400, "unknown field"),
    ("unknown query", "/v1/encode?k=2", {"json": {"image": B64}}, 400, "unknown query"),
    ("wrong content type", "/v1/encode", {"content": b"abc", "headers": {"content-type": "text/plain"}}, 415,
     "Content-Type"),
    ("body too large", "/v1/encode", {"files": {"image": ("big.png", b"\0" * 300_000)}}, 413, "limit"),
    ("empty body", "/v1/decode", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
    ("id out of range", "/v1/decode", {"json": {"tokens": [1, 1000]}}, 400, "outside the codebook"),
    ("negative id", "/v1/decode", {"json": {"tokens": [-1]}}, 400, "outside the codebook"),
    ("too many tokens", "/v1/decode", {"json": {"tokens": list(range(9))}}, 400, "1..8 tokens"),
    ("no tokens", "/v1/decode", {"json": {"tokens": []}}, 400, "1..8 tokens"),
    ("missing tokens", "/v1/decode", {"json": {"ids": [1]}}, 400, "unknown field"),
    ("tokens not a list", "/v1/decode", {"json": {"tokens": "1 2 3"}}, 400, "list of integers"),
    ("float token", "/v1/decode", {"json": {"tokens": [1, 2.5]}}, 400, "tokens[1]"),
    ("steps not int", "/v1/decode", {"json": {"tokens": [1], "steps": "many"}}, 400, "steps"),
    ("steps too many", "/v1/decode", {"json": {"tokens": [1], "steps": 10_000}}, 400, "1..8"),
    ("guidance not finite", "/v1/decode", {"content": b'{"tokens": [1], "guidance_scale": NaN}',
                                           "headers": {"content-type": "application/json"}}, 400, "finite"),
    ("seed bool", "/v1/decode", {"json": {"tokens": [1], "seed": True}}, 400, "seed"),
    ("bad format", "/v1/decode", {"json": {"tokens": [1], "format": "jpeg"}}, 400, "format"),
]


@pytest.mark.parametrize("name,path,kwargs,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_naming_it_and_the_server_still_answers(client, tok, name, path, kwargs, status, words):
    r = client.post(path, **kwargs)
    assert r.status_code == status, (name, r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and words in body["error"], body
    png = png_bytes(seed=1)
    ok = client.post("/v1/encode?num_tokens=2", files={"image": ("a.png", png)})
    assert ok.status_code == 200 and ok.json()["tokens"] == encode_direct(tok, png, 2)


def test_wrong_method_and_path_are_json_4xx(client):
    r = client.get("/v1/encode")
    assert r.status_code == 405 and r.json()["status"] == 405
    r = client.post("/v1/nothing", json={})
    assert r.status_code == 404 and "error" in r.json()


def test_declared_body_size_is_refused_before_reading(client):
    r = client.post("/v1/encode", content=b"x" * 10, headers={"content-type": "application/json",
                                                              "content-length": str(10**9)})
    assert r.status_code == 413 and "limit" in r.json()["error"]


# --- batching ----------------------------------------------------------------------------------------------------

def test_bad_request_in_a_batch_never_fails_its_neighbours(client, tok):
    pngs = [png_bytes(seed=10 + i) for i in range(7)]

    def good(i):
        return client.post("/v1/encode?num_tokens=3", files={"image": ("a.png", pngs[i])})

    def bad():
        return client.post("/v1/encode", files={"image": ("bad.png", b"not an image at all")})

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(bad)] + [pool.submit(good, i) for i in range(7)]
        responses = [f.result(timeout=120) for f in futures]
    assert responses[0].status_code == 415
    for i, r in enumerate(responses[1:]):
        assert r.status_code == 200, r.text
        assert r.json()["tokens"] == encode_direct(tok, pngs[i], 3)
    assert max(int(r.headers[BATCH_HEADER]) for r in responses[1:]) > 1  # they did share a batch


def test_concurrent_requests_get_their_own_results(client, tok):
    """32 concurrent encodes (different images and lengths) equal 32 single encodes; concurrent decodes of ragged
    lengths equal single decodes."""
    pngs = [png_bytes(40 + i % 5, 50 + i, seed=100 + i) for i in range(32)]
    ks = [1 + i % 8 for i in range(32)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: client.post(f"/v1/encode?num_tokens={ks[i]}",
                                                        files={"image": ("a.png", pngs[i])}), range(32),
                                  timeout=300))
    got = [r.json()["tokens"] for r in responses]
    assert got == [encode_direct(tok, pngs[i], ks[i]) for i in range(32)]
    assert max(int(r.headers[BATCH_HEADER]) for r in responses) > 1

    with ThreadPoolExecutor(16) as pool:
        decoded = list(pool.map(lambda ids: client.post("/v1/decode", json={"tokens": ids}), got, timeout=300))
    assert max(int(r.headers[BATCH_HEADER]) for r in decoded) > 1  # ragged lengths in one batch
    for ids, r in zip(got, decoded):
        assert np.array_equal(png_pixels(r.content), decode_direct(tok, ids))


def test_decode_batches_are_grouped_by_sampler_arguments(tmp_path):
    """A rectified-flow decoder: one batch of jobs with different (steps, guidance, seed) and lengths gives each
    job what a single decode with its own arguments gives."""
    from vistok.serve.apis import DecodeAPI
    from vistok.serve.app import load_facts
    from vistok.serve.requests import DecodeJob, decode_job

    torch.manual_seed(0)
    path = build_tokenizer("rf-tiny").save_pretrained(tmp_path / "rf")
    facts = load_facts(str(path))
    assert facts.decoder == "rectified-flow"
    api = DecodeAPI(str(path), facts, threads=1, max_batch_size=8)
    api.setup("cpu")
    raw = [{"tokens": [1, 2, 3], "steps": 2, "seed": 0}, {"tokens": [4], "steps": 2, "seed": 0},
           {"tokens": [5, 6], "steps": 3, "seed": 0}, {"tokens": [1, 2, 3], "steps": 2, "seed": 7},
           {"tokens": [7, 8, 9, 10], "steps": 2, "seed": 0, "guidance_scale": 2.0}]
    jobs = [DecodeJob(**decode_job(r, facts, Limits())) for r in raw]
    out = api.predict(api.batch(jobs))
    assert len(out) == len(jobs)
    tok = Tokenizer.from_pretrained(path)
    for (png, job, batch), r in zip(out, raw):
        assert job.tokens == r["tokens"] and batch == len(jobs)
        want = decode_direct(tok, r["tokens"], steps=r["steps"], seed=r["seed"],
                             guidance_scale=r.get("guidance_scale", 1.0))
        assert np.abs(png_pixels(png).astype(int) - want.astype(int)).max() <= 1, r
    assert not np.array_equal(png_pixels(out[0][0]), png_pixels(out[3][0]))  # the seed matters


# --- bind policy and the command line ----------------------------------------------------------------------------

def test_non_loopback_bind_needs_a_key_or_insecure():
    from vistok.serve.bind import check_bind

    assert check_bind("127.0.0.1", None, False) == "127.0.0.1"
    assert check_bind("localhost", None, False) == "127.0.0.1"
    with pytest.raises(ValueError, match="--api-key"):
        check_bind("0.0.0.0", None, False)
    assert check_bind("0.0.0.0", "k", False) == "0.0.0.0"
    assert check_bind("::", None, True) == "::"
    with pytest.raises(ValueError, match="litserve binds"):
        check_bind("10.1.2.3", "k", False)


def test_cli_refuses_a_public_bind_in_one_line(model_dir, capsys, monkeypatch):
    from vistok.cli import main

    monkeypatch.delenv("VISTOK_API_KEY", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", str(model_dir), "--host", "0.0.0.0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vistok serve: error: refusing to bind 0.0.0.0") and "\n" not in err


# --- a real server process on loopback ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(model_dir, tmp_path_factory):
    """`vistok serve` as a real process on 127.0.0.1 with an API key, run from an empty directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    port, key = free_port(), "test-key-123"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VISTOK_API_KEY": key}
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "wb")  # a file: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", "serve", "--model", str(model_dir), "--port",
                             str(port), "--max-batch-size", "4"], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Live(port, key)
    try:
        wait_healthy(lambda p: server.request(p, key=None, timeout=2)[0], proc=proc)
        server.proc, server.cwd = proc, cwd
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the group: litserve's workers and API server too
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def test_real_server_auth_and_endpoints(live, tok):
    assert live.request("/health", key=None)[0] == 200
    for key in (None, "wrong-key"):
        status, body, headers = live.request("/v1/info", key=key)
        assert status == 401 and "API key" in json.loads(body)["error"]
        assert headers.get("www-authenticate", headers.get("WWW-Authenticate", "")).startswith("Bearer")
        status, body, _ = live.request("/v1/decode", json.dumps({"tokens": [1]}).encode(),
                                       {"Content-Type": "application/json"}, key=key)
        assert status == 401
    assert live.request("/v1/info")[0] == 200
    png = png_bytes(seed=3)
    status, body, _ = live.request("/v1/encode?num_tokens=5", json.dumps({"image": base64.b64encode(png).decode()})
                                   .encode(), {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["tokens"] == encode_direct(tok, png, 5)
    status, body, headers = live.request("/v1/decode", json.dumps({"tokens": [3, 1, 4]}).encode(),
                                         {"Content-Type": "application/json"})
    assert status == 200 and body.startswith(b"\x89PNG")
    assert live.request("/v1/decode", b"{oops", {"Content-Type": "application/json"})[0] == 400
    assert live.request("/v1/info")[0] == 200  # still answering
    assert live.request("/", key=None)[0] == 200  # the static page itself holds no data
    assert list(live.cwd.iterdir()) == []  # litserve's client.py is not written


def test_real_server_stops_on_sigint(model_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", "serve", "--model", str(model_dir), "--port",
                             str(port)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = Live(port, None)
    try:
        wait_healthy(lambda p: server.request(p, key=None, timeout=2)[0], proc=proc)
        assert server.request("/v1/info", key=None)[0] == 200  # no key configured: open on loopback
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    out = (tmp_path / "serve.log").read_text(errors="replace")
    assert f"http://127.0.0.1:{port}/" in out and list(cwd.iterdir()) == []
