"""The processes of `vistok serve` live and die together.

litserve runs the server as several processes started by the one `vistok serve` runs in (the main process): a
multiprocessing manager and the API server (forked), and the inference workers (spawned). Left alone, a SIGTERM or
SIGKILL to the main process left the API server and the workers running, re-parented, still answering on the port.
Here:
  - every child dies with the main process: on Linux the kernel sends it SIGKILL when its parent dies
    (`prctl(PR_SET_PDEATHSIG)`, set in forked children by an at-fork hook and in the workers by their setup), and
    everywhere a watchdog thread in each child exits it once its parent is gone (polled every `WATCHDOG_S`);
  - SIGTERM (and SIGHUP) to the main process shut the server down as Ctrl+C does (litserve's own shutdown), and
    whatever child is still alive afterwards is terminated, then killed;
  - a dead inference worker (litserve then shuts the whole server down) is reported in one line, not an EOFError
    traceback from the manager that litserve stopped under the main process's feet; the exit status is 1.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

log = logging.getLogger("vistok.serve")
WATCHDOG_S = 1.0  # how often a child checks that its parent is alive (where PR_SET_PDEATHSIG does not exist)
STOP_GRACE_S = 10.0  # after a SIGTERM: time for litserve's own shutdown before every child is killed
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid` (its parent) ends: PR_SET_PDEATHSIG on Linux, and a watchdog thread
    everywhere. Exits at once when the parent is already gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent ended before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="vistok-parent-watchdog", daemon=True).start()


def stop_children(grace: float = 5.0) -> None:
    """Terminate every child process still alive, wait up to `grace` seconds, kill the rest."""
    children = multiprocessing.active_children()
    for child in children:
        try:
            child.terminate()
        except Exception:  # already gone
            pass
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1.0)


def _forked_child(main_pid: int) -> None:
    """In a child forked by the main process: the default SIGTERM/SIGHUP actions (not the main process's
    handler, which the fork copied), and die with the main process."""
    if os.getppid() != main_pid:  # a fork further down the tree
        return
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    die_with_parent(main_pid)


class _Stop(KeyboardInterrupt):
    """A SIGTERM/SIGHUP, raised in the main thread: litserve shuts down as it does on Ctrl+C."""


def dead_worker(workers: list[Any]) -> str | None:
    """Which inference worker's death shut the server down ("inference worker (pid P) died with exit code C"), or
    None when all are alive. litserve's shutdown terminates the other workers (SIGTERM) before this is asked, so
    the one that died first is one that ended some other way (killed, crashed, out of memory), when there is one."""
    dead = [p for p in workers if not p.is_alive()]
    dead = [p for p in dead if p.exitcode != -signal.SIGTERM] or dead
    return f"inference worker (pid {dead[0].pid}) died with exit code {dead[0].exitcode}" if dead else None


def run_server(server: Any, **run_kwargs: Any) -> int:
    """`server.run(**run_kwargs)` with the guarantees of this module's docstring; returns the exit status (0 after
    Ctrl+C or SIGTERM, 1 when an inference worker died)."""
    main_pid = os.getpid()
    os.register_at_fork(after_in_child=lambda: _forked_child(main_pid))
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():  # a second signal: no more waiting
            stop_children(grace=0.0)
            os._exit(128 + signum)
        stopping.set()
        deadline = threading.Timer(STOP_GRACE_S, lambda: (stop_children(grace=0.0), os._exit(128 + signum)))
        deadline.daemon = True  # a shutdown that finishes in time exits without waiting for it
        deadline.start()
        raise _Stop()

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    status = 0
    try:
        server.run(**run_kwargs)
    except KeyboardInterrupt:
        pass
    except (EOFError, ConnectionError) as e:  # the manager went away under `run`: litserve shut down after a death
        what = dead_worker(getattr(server, "inference_workers", [])) or \
            f"the server's manager process ended ({type(e).__name__})"
        print(f"vistok serve: {what}; the server has shut down", file=sys.stderr, flush=True)
        status = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop_children()
    return status
