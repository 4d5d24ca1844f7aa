"""Give freed heap memory back to the system between tests and between the DDP worker's configs.

glibc's malloc keeps memory that tensors freed in its heap, fragmented, instead of returning it: after the 31
one-step config trainings the pytest process held 7.5 GB of which 0.6 GB was in use, and a DDP worker rank that
trains every config one after another reached 9.4 GB. With the two ranks and pytest together the 24 GB machine
ran out of memory and the kernel killed a rank. `malloc_trim(0)` returns the free pages (about 0.1 ms).
A `gc.collect()` first frees tensors held by reference cycles too, but costs ~0.26 s: the DDP worker runs it
between configs (a whole training each); after every test it would add ~4 minutes to the suite.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_LIBC = ctypes.util.find_library("c")


def release_freed_memory(collect_cycles: bool = True) -> None:
    if collect_cycles:
        gc.collect()  # reference cycles (modules, optimizers) first, so their tensors are freed too
    if _LIBC is None:
        return
    try:
        trim = ctypes.CDLL(_LIBC).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return
    trim(0)
