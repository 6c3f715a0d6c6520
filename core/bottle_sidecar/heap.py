"""Hand the memory of large bodies back: a garbage collection and glibc's ``malloc_trim``, a moment later.

A service that holds a request body whole (the egress proxy scans it before
sending it on) kept some 40 MiB more after a few 8 MB POSTs than before them,
for the rest of its life, for two reasons. A finished flow is a reference
cycle (it and its connection's layers point at each other), freed only by
Python's collector, which runs when objects are allocated: an idle service
allocates none, so the last flows stayed, bodies and all. And glibc, once a
large block it mapped on its own is freed, raises its mmap threshold to that
size (up to 32 MiB), so later large blocks come from the heap, whose free
pages below a live allocation stay resident. Fixing the threshold instead
(``MALLOC_MMAP_THRESHOLD_``) maps and faults in every large body afresh, which
cost a quarter to a half of the proxy's throughput when measured. So, one
second after the last large body is done with: a collection, then
``malloc_trim(0)``, which returns every free page of every arena; together a
few milliseconds, and only once large bodies stop coming.

Elsewhere than glibc (no ``malloc_trim``) this does nothing.
"""

import asyncio
import ctypes
import ctypes.util
import functools
import gc

LARGE = 1 << 20  # bytes: a body at least this large arms a trim
DELAY = 1.0  # seconds after the last large body


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> bool:
    """Free the garbage in reference cycles, then return free heap pages to the kernel; whether glibc gave any."""
    gc.collect()
    malloc_trim = _malloc_trim()
    return bool(malloc_trim(0)) if malloc_trim is not None else False


class Trimmer:
    """Trims the heap ``DELAY`` seconds after the last large body a service has finished with.

    :meth:`finished` is called on the event loop's thread when a body of
    *size* bytes is done with (its request answered or failed): a large one
    (re)schedules the trim, so a stream of large bodies trims once, after it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float = DELAY, large: int = LARGE):
        self._loop = loop
        self._delay = delay
        self._large = large
        self._pending: asyncio.TimerHandle | None = None

    def finished(self, size: int) -> None:
        if size < self._large:
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = self._loop.call_later(self._delay, self._trim)

    def _trim(self) -> None:
        self._pending = None
        trim()
