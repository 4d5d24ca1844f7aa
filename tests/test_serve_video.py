"""Serving a video model (issue 15's follow-up to issue 14): POST /v1/encode takes a video file (multipart or
base64 JSON) and returns its tokens and token grid, /v1/decode returns an mp4 (or base64, or the frames as a PNG),
bad video bytes get a 4xx naming the problem from the gate, before any batch, and never fail their neighbours.
In-process server (litserve's workers with FastAPI's TestClient) on the untrained `omni-tiny` grid model."""

from __future__ import annotations

import base64
import io
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from tests.serve_helpers import wait_healthy  # noqa: E402
from vistok.data.images import load_rgb, to_uint8  # noqa: E402
from vistok.data.model_clips import load_model_clip  # noqa: E402
from vistok.data.sample import photo_dir  # noqa: E402
from vistok.data.sample_clips import render_move  # noqa: E402
from vistok.data.video_io import read_video, write_video  # noqa: E402
from vistok.serve.app import ServeOptions, build_server  # noqa: E402
from vistok.serve.limits import Limits  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402
from vistok.tokenizers.tokenizer import Tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return build_tokenizer("omni-tiny").save_pretrained(tmp_path_factory.mktemp("serve_video") / "m")


@pytest.fixture(scope="module")
def tok(model_dir) -> Tokenizer:
    return Tokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    """A 10-frame pan over a bundled photo, 40 px, 8 fps, H.264."""
    frames = render_move(load_rgb(photo_dir() / "chelsea.png"), "pan", random.Random(1), 10, 40)
    return write_video(tmp_path_factory.mktemp("v") / "pan.mp4", frames, fps=8).read_bytes()


@pytest.fixture(scope="module")
def client(model_dir):
    from fastapi.testclient import TestClient
    from litserve.utils import wrap_litserve_start

    server, _, _ = build_server(str(model_dir), ServeOptions(max_batch_size=8, batch_timeout=0.2, device="cpu",
                                                             threads=1, limits=Limits(max_frames=33), timeout=60))
    with wrap_litserve_start(server) as s, TestClient(s.app) as c:
        wait_healthy(lambda p: c.get(p).status_code)
        yield c


def direct(tok: Tokenizer, data: bytes) -> list[int]:
    return tok.encode(load_model_clip(data, tok.input_spec).video[None])[0].tolist()


def test_encode_a_video_file_returns_its_tokens_and_grid(client, tok, mp4):
    r = client.post("/v1/encode", files={"video": ("pan.mp4", mp4, "video/mp4")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["tokens"] == direct(tok, mp4)  # 10 frames -> the 9-frame clip (1 + 4k) the model takes
    assert out["token_grid"] == [3, 4, 4] and out["num_tokens"] == 48
    assert out["source"]["frames"] == 9 and out["source"]["source_frames"] == 10 and out["resized"] is True
    r = client.post("/v1/encode", json={"video": base64.b64encode(mp4).decode(), "num_tokens": 32})
    assert r.status_code == 200 and r.json()["tokens"] == direct(tok, mp4)[:32] and r.json()["token_grid"] == [2, 4, 4]
    png = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(png, format="PNG")
    r = client.post("/v1/encode", files={"image": ("a.png", png.getvalue())})  # an image: a one-frame video
    assert r.status_code == 200 and r.json()["token_grid"] == [1, 4, 4]
    info = client.get("/v1/info").json()["model"]
    assert info["video"] is True and info["input"]["frames"] == "1+4k"


def test_decode_returns_an_mp4_of_the_clip(client, tok, mp4, tmp_path):
    ids = direct(tok, mp4)
    r = client.post("/v1/decode", json={"tokens": ids, "fps": 8})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    frames, fps = read_video(r.content)
    want = to_uint8(tok.decode(torch.tensor([ids]))[0]).permute(1, 2, 3, 0).numpy()  # (9, 32, 32, 3)
    assert frames.shape == (9, 32, 32, 3) and fps == pytest.approx(8)
    # lossy H.264 of an untrained model's noise-like frames: each frame's mean colour survives
    assert np.abs(frames.mean((1, 2)) - want.mean((1, 2))).max() < 8
    r = client.post("/v1/decode", json={"tokens": ids[:16], "format": "base64"})
    assert r.status_code == 200 and read_video(base64.b64decode(r.json()["video"]))[0].shape[0] == 1
    r = client.post("/v1/decode", json={"tokens": ids, "format": "png"})  # lossless: the frames in a row, exact
    assert r.headers["content-type"] == "image/png"
    row = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))  # (32, 9 * 32, 3)
    assert np.array_equal(row, np.concatenate(list(want), axis=1))


@pytest.mark.parametrize("name,kwargs,status,words", [
    ("garbage bytes", {"files": {"video": ("x.mp4", b"\x00\x01not a video at all" * 10)}}, 415, "video"),
    ("cut mp4", "cut", 415, "video"),
    ("target_psnr", {"json": {"video": "AAAA", "target_psnr": 20}}, 400, "target_psnr"),
    ("partial latent frame", {"data": {"num_tokens": "20"}}, 400, "whole latent frames"),
    ("video and image", {"json": {"video": "AAAA", "image": "AAAA"}}, 400, "not both"),
])
def test_bad_video_requests_get_a_4xx_naming_the_problem(client, mp4, name, kwargs, status, words):
    if kwargs == "cut":
        kwargs = {"files": {"video": ("cut.mp4", mp4[:200])}}
    if "data" in kwargs:
        kwargs = {**kwargs, "files": {"video": ("pan.mp4", mp4)}}
    r = client.post("/v1/encode", **kwargs)
    assert r.status_code == status, (name, r.text)
    assert words in r.json()["error"], (name, r.json())


@pytest.mark.parametrize("body,words", [
    ({"tokens": list(range(20))}, "whole latent frames"),
    ({"tokens": [1000] * 16}, "codebook"),
    ({"tokens": [1] * 16, "format": "gif"}, "format"),
    ({"tokens": [1] * 16, "steps": 3}, "unknown field"),
])
def test_bad_video_decodes_get_a_400(client, body, words):
    r = client.post("/v1/decode", json=body)
    assert r.status_code == 400 and words in r.json()["error"], r.text


def test_a_bad_video_in_a_batch_never_fails_its_neighbours(client, tok, mp4):
    bodies = [mp4] * 5 + [b"garbage" * 50] + [mp4] * 2

    def send(data: bytes):
        return client.post("/v1/encode", files={"video": ("c.mp4", data)})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, bodies))
    want = direct(tok, mp4)
    for data, r in zip(bodies, results):
        if data == mp4:
            assert r.status_code == 200 and r.json()["tokens"] == want
        else:
            assert r.status_code == 415
