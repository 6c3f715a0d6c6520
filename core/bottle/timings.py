"""Where a run's time goes: each step of launch, when it started and how long it took (``bottle run --timings``).

Steps may overlap (the sidecar prepares in the background while the sandbox
is made), so each is recorded with its own start, from any thread, and the
breakdown is a timeline rather than a sum.
"""

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
