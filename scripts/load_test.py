"""Load test of `vistok serve`: throughput and latency with dynamic batching on and off, on loopback only.

For each mode it starts `vistok serve` on 127.0.0.1 (a free port), waits for /health, then for each number of
concurrent clients runs that many client threads, each with one keep-alive connection sending requests back to
back, until `--duration` seconds or `--max-requests` requests have passed (whichever comes first). Every request
has a timeout, so the whole run is bounded. Prints throughput, p50/p99 latency and errors per (mode, clients),
and writes a PNG of throughput vs clients and a JSON of the figures.

    python scripts/load_test.py                            # a demo-sized model (titok-demo, random weights)
    python scripts/load_test.py --model runs/demo/export --clients 1,4,16 --duration 10 --endpoint decode

The client threads run on the same machine as the server: on a 2-core CPU they take part of the cores too.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"on": 16, "off": 1}  # max_batch_size: batching on / off


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_request(endpoint: str, size: int, max_tokens: int) -> tuple[str, bytes]:
    """(path, JSON body): a photo of the scikit-image set (encode), or all tokens of one (decode)."""
    from PIL import Image
    from skimage import data as skdata

    img = Image.fromarray(skdata.astronaut()).resize((size * 2, size * 2), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    if endpoint == "encode":
        return f"/v1/encode?num_tokens={max_tokens}", json.dumps({"image": base64.b64encode(buf.getvalue()).decode()}
                                                                 ).encode()
    return "/v1/decode", json.dumps({"tokens": [(7 * i) % 1000 for i in range(max_tokens)]}).encode()


class Server:
    def __init__(self, model: str, max_batch_size: int, batch_timeout: float, workers: int, device: str,
                 log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            # the server runs in the log's folder: a relative --model must not be resolved there
            [sys.executable, "-m", "vistok.cli", "serve", "--model", str(Path(model).resolve()), "--port",
             str(self.port),
             "--max-batch-size", str(max_batch_size), "--batch-timeout", str(batch_timeout),
             "--workers", str(workers), "--device", device],
            cwd=log.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not healthy within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def run_level(port: int, path: str, body: bytes, clients: int, duration: float, max_requests: int,
              timeout: float) -> dict:
    """`clients` threads sending requests back to back; bounded by time, by count and per request."""
    latencies: list[float] = []
    batches: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    count = [0]
    start = time.monotonic()
    deadline = start + duration

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while time.monotonic() < deadline:
            with lock:
                if count[0] >= max_requests:
                    return
                count[0] += 1
            t = time.monotonic()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                batch = int(r.headers.get("X-Vistok-Batch-Size", "0") or 0)
            except (OSError, http.client.HTTPException) as e:
                ok, batch = False, 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                r = e
            dt = time.monotonic() - t
            with lock:
                if ok:
                    latencies.append(dt)
                    batches.append(batch)
                else:
                    errors.append(str(getattr(r, "status", r)))
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=duration + timeout + 5)
    wall = time.monotonic() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"clients": clients, "requests": len(lat), "errors": len(errors), "wall_s": wall,
            "throughput": len(lat) / wall, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_batch": sum(batches) / len(batches) if batches else 0.0,
            "error_kinds": sorted(set(errors))[:5]}


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, rows in results.items():
        ax.plot([r["clients"] for r in rows], [r["throughput"] for r in rows], "o-",
                label=f"batching {mode} (max batch {MODES[mode]})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests / s")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--model", default=None, help="export directory (default: titok-demo with random weights)")
    p.add_argument("--endpoint", choices=("encode", "decode"), default="encode")
    p.add_argument("--clients", default="1,2,4,8,16", help="comma-separated numbers of concurrent clients")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per (mode, clients) level")
    p.add_argument("--max-requests", type=int, default=20000, help="requests per level at most")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured requests per mode")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request at most")
    p.add_argument("--batch-timeout", type=float, default=0.0,
                   help="the server's --batch-timeout with batching on (default 0, the server's default)")
    p.add_argument("--workers", type=int, default=1, help="inference workers per endpoint")
    p.add_argument("--device", default="auto", help="the server's --device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--modes", default="on,off", help="batching modes to run: on, off or both")
    p.add_argument("--output", default="runs/load_test/throughput.png", help="PNG of throughput vs clients")
    a = p.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    if not clients or min(clients) < 1 or a.duration <= 0 or a.max_requests < 1:
        p.error("--clients must be positive integers, --duration > 0, --max-requests >= 1")
    modes = [m for m in a.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        p.error("--modes takes on and/or off")
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="vistok-load-") as tmp:
        model = a.model
        if model is None:
            import torch

            from vistok.tokenizers import build_tokenizer

            torch.manual_seed(0)
            model = str(build_tokenizer("titok-demo").save_pretrained(Path(tmp) / "titok-demo"))
        from vistok.serve.app import load_facts

        facts = load_facts(model)
        path, body = photo_request(a.endpoint, facts.image_size, facts.max_tokens)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"model {model}: {facts.image_size} px, {facts.max_tokens} tokens; POST {path.split('?')[0]}; "
              f"{cores} cores; {a.duration:g} s per level", flush=True)
        results: dict[str, list[dict]] = {}
        for mode in modes:
            server = Server(model, MODES[mode], a.batch_timeout if mode == "on" else 0.0, a.workers, a.device,
                            Path(tmp) / f"serve-{mode}.log")
            try:
                server.wait()
                run_level(server.port, path, body, max(clients), a.warmup, a.max_requests, a.timeout)
                rows = results[mode] = []
                for n in clients:
                    r = run_level(server.port, path, body, n, a.duration, a.max_requests, a.timeout)
                    rows.append(r)
                    print(f"batching {mode:3s}  clients {n:3d}: {r['throughput']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms"
                          f"  p99 {r['p99_ms']:7.1f} ms  mean batch {r['mean_batch']:4.1f}  {r['requests']} ok, "
                          f"{r['errors']} errors {' '.join(r['error_kinds'])}", flush=True)
            finally:
                server.stop()
    if set(results) == set(MODES):
        for on, off in zip(results["on"], results["off"]):
            print(f"clients {on['clients']:3d}: batching gives {on['throughput'] / max(off['throughput'], 1e-9):.2f}x "
                  "throughput")
    title = f"vistok serve, POST /v1/{a.endpoint}, {facts.image_size} px / {facts.max_tokens} tokens, {cores} cores"
    plot(results, out, title)
    out.with_suffix(".json").write_text(json.dumps({"endpoint": a.endpoint, "model": a.model or "titok-demo (random)",
                                                    "cores": cores, "duration_s": a.duration, "results": results},
                                                   indent=2))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":  # the server's workers are spawned processes
    main()
