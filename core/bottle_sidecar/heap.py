"""Hand the memory of large bodies back: a garbage collection and glibc's ``malloc_trim``, a moment later.

A service that holds a request body whole (the egress proxy scans it before
sending it on) allocates megabytes at a time. glibc serves the first such
block from its own mapping and unmaps it when freed, but then raises its mmap
threshold to that size (up to 32 MiB), so the next ones come from the heap,
and freed heap pages below a live allocation stay resident: the proxy kept
some 50 MiB more after a few 8 MB POSTs than before them, for the rest of its
life. Fixing the threshold instead (``MALLOC_MMAP_THRESHOLD_``) maps and
faults in every large body afresh, which cost a quarter to a half of the
proxy's throughput when measured. ``malloc_trim(0)`` returns every free page
of every arena, in a few milliseconds, and is called only once large bodies
stop coming: one second after the last. Before it, a collection of the
garbage in reference cycles: a finished flow is one (it and its connection's
layers point at each other), and an idle service allocates nothing that
would make Python's collector run, so the last flows, bodies and all, stayed.

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
    """Free the garbage in reference cycles and return free heap pages to the kernel now; whether any was."""
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
