"""One job at a time per output directory: a lock file naming its holder.

Two `vistok encode` runs into one directory would delete each other's `.partial` files and interleave their
manifest commits. A job therefore holds an exclusive POSIX record lock (`fcntl.lockf`) on `<output>/.vistok.lock`
for its whole run; the file records the holder (pid, host, start time, command) so that a second job is refused
with a message naming it. The operating system drops the lock when the holder dies, even under `kill -9`, so a
stale file never blocks a rerun (the next job takes the lock and rewrites the file). A record lock, unlike
`flock`, is not inherited by forked children: DataLoader workers orphaned by a killed job do not keep holding
it. It is per process, so it does not keep two jobs in one process apart, and on a network file system it is
only as good as that file system's locking (NFS supports it through its lock manager). The file is removed when
the job ends.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".vistok.lock"


class DirectoryBusy(OSError):
    """Another live job holds the directory's lock."""


class DirectoryLock:
    """`with DirectoryLock(output, "encode"):` the job's exclusive hold on `output` (created if missing)."""

    def __init__(self, directory: str | Path, job: str) -> None:
        self.directory, self.job = Path(directory), job
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise
                holder = _describe(_read_holder(fd))
                os.close(fd)
                raise DirectoryBusy(f"{self.directory} is in use by another job ({holder}); wait for it to finish "
                                    f"or choose another directory ({self.path} names the holder)") from None
            # The holder before us may have removed the file between our open and our lock: retry on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"job": self.job, "pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: the next job opens a fresh file
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8")) if data else {}
        return info if isinstance(info, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "holder not yet recorded"
    parts = [f"{info.get('job', 'a')} job, pid {info.get('pid', '?')} on host {info.get('host', '?')}"]
    if info.get("started"):
        parts.append(f"since {info['started']}")
    return ", ".join(parts)
