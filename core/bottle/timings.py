"""Where a run's time goes: each step of launch, when it started and how long it took (``bottle run --timings``).

Steps may overlap (the sidecar prepares in the background while the sandbox
is made), so each is recorded with its own start, from any thread, and the
breakdown is a timeline rather than a sum. The timeline starts when the
process did: what ran before the launch (the interpreter, the imports, the
plan) is its first step, since it is a quarter of what a user waits for.
"""

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator


@dataclass(frozen=True)
class Step:
    name: str
    start_s: float  #: since the run's origin
    duration_s: float


@dataclass
class Timings:
    origin: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as *name*, however it ends (a step that failed still took its time)."""
        start = time.monotonic()
        try:
            yield
        finally:
            end = time.monotonic()
            with self._lock:
                self.steps.append(Step(name, round(start - self.origin, 3), round(end - start, 3)))

    @classmethod
    def since_process_start(cls, name: str) -> "Timings":
        """Timings whose origin is this process's start, with the time until now as the step *name*;
        from now on where the start cannot be read (no ``/proc``)."""
        age = _process_age()
        timings = cls()
        if age is not None:
            timings.origin -= age
            timings.steps.append(Step(name, 0.0, round(age, 3)))
        return timings

    def as_dict(self) -> dict:
        ordered = sorted(self.steps, key=lambda step: step.start_s)
        return {"total_s": round(time.monotonic() - self.origin, 3), "steps": [asdict(step) for step in ordered]}

    def lines(self) -> list[str]:
        """A timeline: each step's start and duration in seconds, in the order they started."""
        report = self.as_dict()
        width = max((len(step["name"]) for step in report["steps"]), default=4)
        rows = [f"{step['name']:{width}}  at {step['start_s']:6.3f} s  took {step['duration_s']:6.3f} s"
                for step in report["steps"]]
        return [*rows, f"{'total':{width}}  {report['total_s']:.3f} s"]


def _process_age() -> float | None:
    """Seconds since this process started (``/proc/self/stat``, in clock ticks since boot), or None."""
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()  # after the command's name, which may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of the whole line
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
