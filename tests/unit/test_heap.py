"""The heap trimmer: large bodies done with give their pages back, a moment after the last one."""

import asyncio
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


def test_a_run_of_large_bodies_trims_once_after_the_last(monkeypatch):
    trims = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(asyncio.get_running_loop().time()))

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        trimmer = heap.Trimmer(loop, delay=0.2, large=1000)
        started = loop.time()
        trimmer.finished(999)  # small: no trim
        await asyncio.sleep(0.3)
        assert trims == []
        for _ in range(3):
            trimmer.finished(5000)
            await asyncio.sleep(0.1)
        last = loop.time() - 0.1
        await asyncio.sleep(0.4)
        return [at - last for at in trims], started

    after_last, _ = asyncio.run(run())
    assert len(after_last) == 1 and 0.15 <= after_last[0] <= 0.35
