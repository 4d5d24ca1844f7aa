"""`vistok serve`'s processes die together (issue 26): a SIGTERM or SIGKILL to the main process leaves nothing
listening on the port and no child alive; a killed inference worker shuts the server down with one line, no
traceback. Real server processes on 127.0.0.1 (each start takes ~20-40 s: the workers import torch)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from tests.serve_helpers import ROOT, Live, free_port, wait_healthy  # noqa: E402
from vistok.tokenizers import build_tokenizer  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("life") / "m")


def descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start(model_dir: Path, tmp_path: Path, port: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vistok.cli", "serve", "--model", str(model_dir), "--port",
                             str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = Live(port, None)
    try:
        wait_healthy(lambda p: server.request(p, key=None, timeout=2)[0], proc=proc)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, log, server


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_to_the_main_process_stops_every_process(model_dir, tmp_path, sig):
    port = free_port()
    proc, log, server = start(model_dir, tmp_path, port)
    children = descendants(proc.pid)
    try:
        assert len(children) >= 3, children  # manager, API server, two workers (and the resource tracker)
        assert server.request("/v1/info", key=None)[0] == 200
        os.kill(proc.pid, sig)  # the main process only, as a supervisor or `kill PID` does
        assert wait_until(lambda: not listening(port), 15), "the port still accepts connections"
        assert wait_until(lambda: not any(alive(c) for c in children), 15), \
            [c for c in children if alive(c)]
        proc.wait(timeout=15)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    out = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in out, out
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, out


def test_a_killed_worker_ends_the_server_in_one_line(model_dir, tmp_path):
    port = free_port()
    proc, log, server = start(model_dir, tmp_path, port)
    try:
        workers = [c for c in descendants(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, workers  # an encode and a decode worker
        os.kill(workers[0], signal.SIGKILL)
        proc.wait(timeout=60)
        assert wait_until(lambda: not listening(port), 15)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    out = (tmp_path / "serve.log").read_text(errors="replace")
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "EOFError" not in out, out
    assert f"inference worker (pid {workers[0]}) died" in out, out


class _Worker:
    def __init__(self, pid: int, exitcode: int | None) -> None:
        self.pid, self.exitcode = pid, exitcode

    def is_alive(self) -> bool:
        return self.exitcode is None


def test_the_report_names_the_worker_that_died_not_one_the_shutdown_terminated():
    from vistok.serve.lifecycle import dead_worker

    # The killed worker listed second, after the one litserve's shutdown terminated: the report picked the first.
    report = dead_worker([_Worker(11, -signal.SIGTERM), _Worker(12, -signal.SIGKILL)])
    assert report == "inference worker (pid 12) died with exit code -9"
    assert dead_worker([_Worker(11, None), _Worker(12, 1)]) == "inference worker (pid 12) died with exit code 1"
    assert dead_worker([_Worker(11, -signal.SIGTERM)]) == "inference worker (pid 11) died with exit code -15"
    assert dead_worker([_Worker(11, None)]) is None
