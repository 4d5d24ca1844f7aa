"""How a serving worker gathers a batch (`vistok.serve.batching`): a busy worker starts at once with what queued
up, an idle one waits up to `batch_timeout` from the oldest request's arrival, a full batch goes at once, an idle
worker blocks on the queue instead of polling it, and litserve's stop signal and request timeout still work.

Only a plain `queue.Queue` and threads: no server, no model. Every wait is bounded."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("litserve", reason="vistok serve needs litserve (pip install -e .)")

from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError  # noqa: E402

from vistok.serve import batching  # noqa: E402
from vistok.serve.batching import QueueDelayBatchedLoop  # noqa: E402


def api(max_batch_size: int = 16, batch_timeout: float = 0.3, request_timeout: float = 60.0) -> SimpleNamespace:
    return SimpleNamespace(max_batch_size=max_batch_size, batch_timeout=batch_timeout, request_timeout=request_timeout)


def request(i: int, queued_at: float | None = None) -> tuple:
    """litserve's queue item: (response queue id, uid, time it was queued, payload)."""
    return (0, f"uid-{i}", time.monotonic() if queued_at is None else queued_at, {"i": i})


class CountingQueue(queue.Queue):
    """A queue that records its `get` calls as (block, timeout); `get_nowait` shows as (False, None)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def get(self, block=True, timeout=None):
        self.calls.append((block, timeout))
        return super().get(block, timeout)


def gather(q: queue.Queue, lit_api: SimpleNamespace) -> tuple[list, list, float]:
    t = time.monotonic()
    payloads, timed_out = QueueDelayBatchedLoop().get_batch_requests(lit_api, q, transport=None)
    return payloads, timed_out, time.monotonic() - t


def test_a_busy_worker_starts_at_once_with_what_queued_up():
    """Requests that waited longer than batch_timeout while the worker was busy go now, without more waiting."""
    q: queue.Queue = queue.Queue()
    long_ago = time.monotonic() - 5.0
    for i in range(5):
        q.put(request(i, long_ago))
    payloads, timed_out, took = gather(q, api(batch_timeout=2.0))
    assert [p[2]["i"] for p in payloads] == [0, 1, 2, 3, 4] and timed_out == []
    assert took < 1.0  # far below the 2 s a fresh batch could wait


def test_an_idle_worker_waits_batch_timeout_from_the_oldest_request_for_more():
    q: queue.Queue = queue.Queue()
    first = time.monotonic()
    q.put(request(0, first))
    later = threading.Timer(0.1, lambda: q.put(request(1)))
    later.start()
    try:
        payloads, _, _ = gather(q, api(batch_timeout=0.4))
    finally:
        later.cancel()
    waited = time.monotonic() - first
    assert [p[2]["i"] for p in payloads] == [0, 1]  # the second request joined the first one's batch
    assert waited >= 0.39  # the batch went when the oldest request had waited batch_timeout, not before
    assert waited < 5.0


def test_a_full_batch_goes_at_once_and_the_rest_stay_queued():
    q: queue.Queue = queue.Queue()
    for i in range(20):
        q.put(request(i))
    payloads, _, took = gather(q, api(max_batch_size=8, batch_timeout=30.0))
    assert [p[2]["i"] for p in payloads] == list(range(8))
    assert q.qsize() == 12
    assert took < 5.0  # not the 30 s batch_timeout


def test_without_a_batch_timeout_an_idle_worker_goes_with_the_request_that_woke_it():
    """batch_timeout=0 (vistok serve's default): the request that wakes an idle worker goes at once, without
    another round trip to the queue; requests queued while the worker was busy are still taken together."""
    q = CountingQueue()
    calls = q.calls
    threading.Timer(0.1, lambda: q.put(request(0))).start()
    payloads, _, took = gather(q, api(batch_timeout=0.0))
    assert [p[2]["i"] for p in payloads] == [0] and took < 5.0
    assert calls == [(True, batching.IDLE_BLOCK_S)]  # one blocking get, no drain

    calls.clear()
    for i in range(3):
        q.put(request(i, time.monotonic() - 1.0))  # queued while the worker was busy
    payloads, _, _ = gather(q, api(batch_timeout=0.0))
    assert [p[2]["i"] for p in payloads] == [0, 1, 2]


def test_an_idle_worker_blocks_on_the_queue_instead_of_polling(monkeypatch):
    """litserve's own gathering polls the queue every millisecond (each poll a round trip to the manager
    process); here an idle worker makes one blocking call per `IDLE_BLOCK_S`."""
    q = CountingQueue()
    monkeypatch.setattr(batching, "IDLE_BLOCK_S", 0.3)
    payloads, timed_out, took = gather(q, api())
    assert payloads == [] and timed_out == []
    assert 0.29 <= took < 5.0
    assert q.calls == [(True, 0.3)]


def test_requests_that_waited_past_the_request_timeout_are_set_apart():
    q: queue.Queue = queue.Queue()
    q.put(request(0, time.monotonic() - 10.0))
    q.put(request(1, time.monotonic() - 10.0))
    q.put(request(2))
    payloads, timed_out, _ = gather(q, api(batch_timeout=0.0, request_timeout=5.0))
    assert [p[2]["i"] for p in payloads] == [2]
    assert timed_out == [(0, "uid-0"), (0, "uid-1")]


def test_the_stop_signal_ends_the_loop():
    q: queue.Queue = queue.Queue()
    q.put(request(0))
    q.put(_SENTINEL_VALUE)
    with pytest.raises(_StopLoopError):
        gather(q, api(batch_timeout=1.0))
