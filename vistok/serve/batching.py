"""How an inference worker gathers a batch: litserve's batched loop with our own `get_batch_requests`.

litserve's gathering (`collate_requests`) opens a `batch_timeout` window whenever the worker asks for work and
polls the request queue every millisecond until the window ends or the batch is full. On a CPU that costs:
  - lockstep: with N closed-loop clients (each sends its next request when the last is answered) and batches of
    up to N, the worker answers N requests at once, then idles while the API process turns the N answers into
    N new requests, which it gathers for the whole window; the API process and the worker take turns instead of
    working at the same time (measured: 1.1x the throughput of no batching at 16 clients on 2 cores);
  - every poll is a round trip to the manager process that holds the queue, which takes CPU from the busy ones,
    and with `batch_timeout=0` the loop spins on the queue without pause.
Here a worker blocks on the queue until a request arrives (no polling), then takes every request already queued
(the ones that arrived while it was busy) and waits for more only while the oldest request of the batch has
waited less than `batch_timeout` since it was queued. A busy worker thus starts at once with what is there and
the API process prepares the next requests meanwhile (a pipeline); an idle worker with `batch_timeout > 0`
waits up to that long to fill a batch, as litserve's does. With `batch_timeout=0` (vistok serve's default) an
idle worker that was woken by a request starts on it at once, without asking the queue again: nothing else was
queued before it, and asking is one more round trip. Batches then form only from requests that arrive while the
worker is busy, which on a CPU (where a batch of 16 costs ~1.3-1.5x less per image than one image, not 16x) was
as fast as a 10 ms wait at 16 clients and faster at 1-8 (docs/benchmarks.md#serving-load-test).
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.utils import LitAPIStatus, LoopResponseType

IDLE_BLOCK_S = 1.0  # an idle worker wakes this often (litserve's own single-request loop does the same)


class QueueDelayBatchedLoop(BatchedLoop):
    def get_batch_requests(self, lit_api: Any, request_queue: Any, transport: Any) -> tuple[list, list]:
        payloads: list = []
        timed_out: list = []
        oldest: float | None = None

        def take(item: Any) -> None:
            nonlocal oldest
            if item == _SENTINEL_VALUE:
                raise _StopLoopError()
            queue_id, uid, queued_at, x = item
            # litserve marks a request started (for restarting a dead worker's requests) as its own gathering does
            self.put_response(transport, queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
            if lit_api.request_timeout not in (-1, False) and time.monotonic() - queued_at > lit_api.request_timeout:
                timed_out.append((queue_id, uid))
                return
            payloads.append((queue_id, uid, x))
            oldest = queued_at if oldest is None else min(oldest, queued_at)

        asked = time.monotonic()
        try:
            first = request_queue.get(timeout=IDLE_BLOCK_S)
        except Empty:
            return payloads, timed_out
        take(first)
        if lit_api.batch_timeout <= 0 and payloads and first[2] >= asked:
            # idle worker, no wait asked for: this request arrived while the worker waited, so nothing else had
            # queued before it; go now (asking the queue again is a round trip to the manager process)
            return payloads, timed_out
        while len(payloads) < lit_api.max_batch_size:
            try:  # what queued up while this worker was busy
                take(request_queue.get_nowait())
                continue
            except Empty:
                pass
            left = (oldest + lit_api.batch_timeout - time.monotonic()) if oldest is not None else 0.0
            if left <= 0:
                break
            try:
                take(request_queue.get(timeout=left))
            except Empty:
                break
        return payloads, timed_out
