"""The demo page end to end in a real headless browser: Debian's `chromium` driven by Playwright (no browser is
downloaded). Where Chromium is missing, the test installs it with apt-get when it runs as root; where it cannot,
it is skipped with one message saying why.

The page is served by a real `vistok serve` process on 127.0.0.1 with an API key (given to the page in the URL
fragment, which the browser never sends to the server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from tests.serve_helpers import ROOT, Live, free_port, wait_healthy  # noqa: E402

BROWSERS = ("chromium", "chromium-browser")
APT_TIMEOUT_S = 600


def find_chromium() -> str:
    """The system Chromium, installed with apt-get if missing and possible; else pytest.skip with the reason."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    reason = None
    if os.environ.get("VISTOK_NO_APT"):
        reason = "VISTOK_NO_APT is set"
    elif not shutil.which("apt-get"):
        reason = "no apt-get on this machine"
    elif os.geteuid() != 0:
        reason = "apt-get needs root"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
                if done.returncode:
                    reason = f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
                    break
        except (OSError, subprocess.TimeoutExpired) as e:
            reason = f"apt-get failed: {e}"
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"demo-page browser test skipped: no system Chromium ({reason or 'apt-get installed no chromium'}); "
                "install Debian's `chromium` package to run it")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="demo-page browser test skipped: the `playwright` "
                                   "package is missing (pip install -e '.[dev]')")
    executable = find_chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from vistok.tokenizers import build_tokenizer

    torch.manual_seed(0)
    model = build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("browser") / "m")
    port, key = free_port(), "browser-key"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", "serve", "--model", str(model), "--port", str(port),
                             "--api-key", key], cwd=tmp_path_factory.mktemp("cwd"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    server = Live(port, key)
    try:
        wait_healthy(lambda p: server.request(p, key=None, timeout=2)[0], proc=proc)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


RECON_BYTES = """async () => {
  const r = await fetch(document.getElementById("recon").src);
  return Array.from(new Uint8Array(await r.arrayBuffer())).join(",");
}"""


def test_demo_page_uploads_a_photo_and_the_slider_changes_the_reconstruction(browser, served, tmp_path):
    from PIL import Image
    from skimage import data as skdata

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).resize((96, 80)).save(photo, quality=90)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{served.base}/#key={served.key}", timeout=30_000)
        page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')", timeout=30_000)
        assert "1..8 tokens" in page.inner_text("#model")
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.body.dataset.decoded === '8'", timeout=60_000)
        assert page.inner_text("#resized") == "(resized from 96x80)"
        assert len(page.inner_text("#tokens").split()) == 8 and page.inner_text("#bytes") == "10.0"
        before = page.evaluate(RECON_BYTES)

        page.locator("#k").fill("2")  # move the slider: input + change events
        page.wait_for_function("document.body.dataset.decoded === '2'", timeout=60_000)
        ids = page.inner_text("#tokens").split()
        assert len(ids) == 2 and page.inner_text("#nk") == "2" and page.inner_text("#bytes") == "2.5"
        after = page.evaluate(RECON_BYTES)
        assert after != before  # the reconstruction changed with the number of tokens
        assert page.inner_text("#error") == "" and not errors
        png = bytes(int(b) for b in after.split(","))
        assert png.startswith(b"\x89PNG")
    finally:
        page.close()


def test_demo_page_asks_for_the_key_when_it_has_none(browser, served):
    page = browser.new_page()
    try:
        page.goto(f"{served.base}/", timeout=30_000)
        page.wait_for_selector("#keybox:not([hidden])", timeout=30_000)
        assert "API key" in page.inner_text("#error")
        page.fill("#key", served.key)
        page.click("#keyform button")
        page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')", timeout=30_000)
        assert page.is_hidden("#keybox")
    finally:
        page.close()
