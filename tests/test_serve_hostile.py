"""What a hostile client sent that became a plain-text 500 (issue 26): every one is now a 4xx JSON error from the
gate. The gate runs in front of a stub endpoint (it answers 200 with the job it was given), so these tests need
no inference worker; the server's own routes (HEAD /) are checked on `build_server`'s app."""

from __future__ import annotations

import base64
import io
import json
import re
import zlib

import pytest
import torch
from PIL import Image

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from fastapi.testclient import TestClient  # noqa: E402

from vistok.serve.facts import model_facts  # noqa: E402
from vistok.serve.gate import Gate  # noqa: E402
from vistok.serve.limits import Limits  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402


async def stub(scope, receive, send):
    """Answers 200 with the canonical job the gate forwarded."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def client_for(variant: str) -> TestClient:
    torch.manual_seed(0)
    return TestClient(Gate(stub, model_facts(build_tokenizer(variant)), Limits()), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def image_client():
    return client_for("titok-tiny")


@pytest.fixture(scope="module")
def video_client():
    return client_for("omni-tiny")


def png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A valid 1x1 PNG whose header claims w x h pixels."""
    data = bytearray(png(1, 1))
    data[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def bomb_gif(w: int, h: int) -> bytes:
    """A valid 1x1 GIF whose screen descriptor claims w x h pixels (PyAV's probe reads it as 0x0)."""
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, format="GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = w.to_bytes(2, "little") + h.to_bytes(2, "little")
    return bytes(data)


def assert_json_4xx(r, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert re.search(words, body["error"]) and body["status"] == status, body


BIG = "1" + "0" * 400  # 10**400 written as a JSON integer


@pytest.mark.parametrize("body,words", [
    ('{"tokens": [' + "9" * 4301 + "]}", "malformed JSON"),  # Python refuses ints of > 4,300 digits: ValueError
    ('{"tokens": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested too deeply"),  # RecursionError
    ('{"tokens": [1, 2], "guidance_scale": ' + BIG + "}", "guidance_scale must be a finite number"),  # OverflowError
])
def test_hostile_json_on_decode_is_a_400(image_client, body, words):
    r = image_client.post("/v1/decode", content=body.encode(), headers={"content-type": "application/json"})
    assert_json_4xx(r, 400, words)


def test_target_psnr_of_400_digits_is_a_400(image_client):
    body = '{"image": "' + base64.b64encode(png()).decode() + '", "target_psnr": ' + BIG + "}"
    r = image_client.post("/v1/encode", content=body.encode(), headers={"content-type": "application/json"})
    assert_json_4xx(r, 400, "target_psnr must be a finite number")


@pytest.mark.parametrize("fps,status,words", [
    (BIG, 400, "fps must be a finite number"),
    ("1e-9", 400, r"fps must be in \[0.1, 240\]"),
    ("0.0004", 400, r"fps must be in \[0.1, 240\]"),
    ("241", 400, r"fps must be in \[0.1, 240\]"),
])
def test_video_decode_fps_out_of_range_is_a_400(video_client, fps, status, words):
    body = '{"tokens": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], "fps": ' + fps + "}"
    r = video_client.post("/v1/decode", content=body.encode(), headers={"content-type": "application/json"})
    assert_json_4xx(r, status, words)


def test_video_decode_at_the_lowest_rate_is_accepted(video_client):
    r = video_client.post("/v1/decode", json={"tokens": list(range(16)), "fps": 0.1})
    assert r.status_code == 200 and r.json()["fps"] == 0.1, r.text


@pytest.mark.parametrize("bomb", [bomb_gif(65000, 65000), bomb_png(20000, 10000)], ids=["gif", "png"])
def test_an_image_bomb_sent_to_a_video_model_is_a_413(video_client, bomb):
    """A header claiming > 179 MP: PIL's DecompressionBombError escaped as a 500 before (the GIF; PyAV's probe
    already caught the PNG)."""
    r = video_client.post("/v1/encode", files={"video": ("bomb.gif", bomb)})
    assert_json_4xx(r, 413, "too large|megapixels")
    r = video_client.post("/v1/encode", json={"image": base64.b64encode(bomb).decode()})
    assert_json_4xx(r, 413, "too large|megapixels")


def test_a_video_model_still_takes_an_ordinary_image(video_client):
    r = video_client.post("/v1/encode", files={"video": ("a.png", png())})
    assert r.status_code == 200 and json.loads(r.text)["frames"] == 1, r.text


def test_an_unexpected_error_in_validation_is_a_json_500(monkeypatch, image_client):
    import vistok.serve.gate as gate

    def boom(*args, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(gate, "decode_job", boom)
    r = image_client.post("/v1/decode", json={"tokens": [1]})
    assert r.status_code == 500 and r.json()["error"].startswith("internal error"), r.text


# --- the server's own routes and options --------------------------------------------------------------------------

def test_head_of_the_demo_page_is_200_like_get(tmp_path):
    from vistok.serve.app import ServeOptions, build_server

    torch.manual_seed(0)
    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path / "m")
    server, _, _ = build_server(str(model), ServeOptions(device="cpu", threads=1))
    client = TestClient(server.app)  # no lifespan: static routes need no worker
    for path in ("/", "/demo.js"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, (path, head.status_code)
        assert head.headers["content-type"] == get.headers["content-type"] and head.content == b""


@pytest.mark.parametrize("mb", ["1e-7", "0.001"])
def test_a_body_limit_below_16_kib_is_refused(mb):
    from vistok.commands.serve import main

    with pytest.raises(ValueError, match="at least 16 KiB"):
        main(["--model", "unused", "--max-body-mb", mb])
    Limits(max_body_bytes=16 << 10)  # the minimum itself is fine
