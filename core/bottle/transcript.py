"""A headless run's output, kept for ``bottle logs``: what the agent printed, as it reached our stdout and stderr.

Backends stream a headless agent's output to this process's
``sys.stdout.buffer`` and ``sys.stderr.buffer`` (:meth:`bottle.backend.Bottle.run_agent`);
while the agent runs, both are wrapped so that every write also goes to the
state dir's ``logs/stdout`` and ``logs/stderr``, the last run's only (a
resumed bottle's earlier output is in the terminal that ran it). The agent
writes what it likes, so each file is bounded: past :data:`LIMIT` bytes the
rest is dropped, and the file says so at its end.
"""

import contextlib
import io
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

LOGS = "logs"
LIMIT = 16 * 1024 * 1024
CUT = b"\n[bottle: the rest of this output was not kept: it passed 16 MiB]\n"


class _Kept(io.RawIOBase):
    """Writes to *target*, and the first LIMIT bytes of it to *copy*."""

    def __init__(self, target: BinaryIO, copy: BinaryIO):
        self.target, self.copy, self.kept = target, copy, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        written = self.target.write(data)
        room = LIMIT - self.kept
        if room > 0:
            self.copy.write(bytes(data[:room]))
            self.kept += min(len(data), room)
            if len(data) > room:
                self.copy.write(CUT)
        return written if written is not None else len(data)

    def flush(self) -> None:
        self.target.flush()
        self.copy.flush()


class _Stream:
    """A text stream whose ``buffer`` is kept: what backends write to."""

    def __init__(self, text, kept: _Kept):
        self._text, self.buffer = text, kept

    def __getattr__(self, name):
        return getattr(self._text, name)


@contextlib.contextmanager
def kept(state_dir: Path) -> Iterator[None]:
    """While in it, what is written to ``sys.stdout.buffer`` and ``sys.stderr.buffer`` is also kept."""
    directory = state_dir / LOGS
    directory.mkdir(mode=0o700, exist_ok=True)
    saved = sys.stdout, sys.stderr
    with open(directory / "stdout", "wb") as out, open(directory / "stderr", "wb") as err:
        sys.stdout = _Stream(saved[0], _Kept(saved[0].buffer, out))
        sys.stderr = _Stream(saved[1], _Kept(saved[1].buffer, err))
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved


def log_path(state_dir: Path, stream: str) -> Path:
    return state_dir / LOGS / stream
