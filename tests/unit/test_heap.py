"""The heap trimmer: large bodies done with give their pages back, a moment after the last one."""

import ctypes
import gc
import weakref

from bottle_sidecar import heap


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_trim_gives_back_the_pages_of_freed_blocks_between_live_ones():
    """What large bodies leave behind, made with glibc's own malloc: blocks served from the heap, every
    other one freed (40 MB). free() cannot give back a hole between live blocks, so its pages stay
    resident until the trim."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    blocks = []
    for _ in range(800):
        blocks.append(block := libc.malloc(100_000))  # below the mmap threshold: from the heap
        ctypes.memset(block, 1, 100_000)  # resident
    live = blocks[1::2]
    for block in blocks[::2]:
        libc.free(block)
    before = _resident_mib()
    try:
        assert heap.trim()
        assert before - _resident_mib() > 30, (before, _resident_mib())
    finally:
        for block in live:
            libc.free(block)


def test_trim_frees_what_only_reference_cycles_hold():
    """A finished flow points at itself through its layers: an idle service would keep it, body and all."""

    class Flow:
        pass

    enabled = gc.isenabled()
    gc.disable()  # as if nothing were allocated meanwhile: no collection comes by itself
    try:
        flow = Flow()
        flow.me, flow.body = flow, bytearray(1 << 20)
        gone = weakref.ref(flow)
        del flow
        assert gone() is not None
        heap.trim()
        assert gone() is None
    finally:
        if enabled:
            gc.enable()


class Clock:
    """An event loop's call_later and nothing else: the calls it was asked for, run when the test says."""

    def __init__(self):
        self.now, self.timers = 0.0, []

    def call_later(self, delay, callback):
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds):
        self.now += seconds
        due = [timer for timer in self.timers if not timer.cancelled and timer.when <= self.now]
        self.timers = [timer for timer in self.timers if timer not in due]
        for timer in due:
            timer.callback()


class Timer:
    def __init__(self, when, callback):
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self):
        self.cancelled = True


def test_a_run_of_large_bodies_trims_once_after_the_last(monkeypatch):
    trims = []
    clock = Clock()
    monkeypatch.setattr(heap, "trim", lambda: trims.append(clock.now))
    trimmer = heap.Trimmer(clock, delay=1.0, large=1000)

    trimmer.finished(999)  # small: nothing to give back
    clock.advance(2)
    assert trims == []
    for _ in range(3):  # a large body every half second, at 2, 2.5 and 3: each puts the trim off
        trimmer.finished(5000)
        clock.advance(0.5)
    assert trims == []
    clock.advance(0.5)
    assert trims == [4.0]  # one second after the last
    clock.advance(5)
    assert trims == [4.0]
