"""The boundary to smolvm: its bundled CLI and its Python SDK, nothing else.

The backend builds every argv and every SDK call itself and goes through one
:class:`Smolvm` object, so the unit tests swap this object for a recorder and
assert the exact calls of each lifecycle step without a VM.

The ``smolmachines`` wheel ships both: the SDK (package ``smol``, whose native
engine loads on first use) and the ``smolvm`` command-line tool, installed as
``smol/smol-vmm`` inside the package (there is no console script). Which one
each step uses, and why, is said where the backend makes the call.
"""

import importlib.util
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bottle.errors import EnvironmentProblem

from bottle_smolvm.probe import parse_cli_error

#: What the CLI prints on stderr at every start when run from the wheel.
PACKED_ASSETS_NOTE = "note: no packed assets found for 'smol-vmm'"


def cli_path() -> str:
    spec = importlib.util.find_spec("smol")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem("The smolmachines package is not installed (pip install bottle-backend-smolvm).")
    binary = Path(list(spec.submodule_search_locations)[0]) / "smol-vmm"
    if not binary.is_file():
        raise EnvironmentProblem(f"The smolvm command-line tool is missing from the smolmachines wheel ({binary}).")
    return str(binary)


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str


class CliError(EnvironmentProblem):
    """A smolvm command failed; the message carries smolvm's error code and text."""

    def __init__(self, what: str, code: str | None, message: str):
        self.code = code
        super().__init__(f"smolvm could not {what}: {f'[{code}] ' if code else ''}{message}")


def strip_note(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(PACKED_ASSETS_NOTE))


class Smolvm:
    """The real boundary: the CLI through subprocess, the SDK through ``smol``."""

    def __init__(self, binary: str | None = None):
        self._binary = binary

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = cli_path()
        return self._binary

    # -- CLI -------------------------------------------------------------

    def cli(self, args: Sequence[str], *, what: str, timeout: float, check: bool = True) -> CliResult:
        """Run ``smolvm --error-format json ARGS`` to completion (stdin closed)."""
        argv = [self.binary, "--error-format", "json", *args]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"smolvm could not {what}: no answer within {timeout:g} s") from None
        result = CliResult(done.returncode, done.stdout, strip_note(done.stderr.decode(errors="replace")))
        if check and result.returncode != 0:
            code, message = parse_cli_error(result.stderr)
            raise CliError(what, code, message)
        return result

    def cli_interactive(self, args: Sequence[str]) -> int:
        """Run ``smolvm ARGS`` on the user's terminal (stdin and stdout inherited).

        stderr goes through a filter that drops the wheel's packed-assets note,
        and nothing else.
        """
        process = subprocess.Popen([self.binary, *args], stderr=subprocess.PIPE)
        relay = threading.Thread(target=_relay_stderr, args=(process.stderr,), daemon=True)
        relay.start()
        try:
            return process.wait()
        finally:
            relay.join(timeout=1)

    # -- SDK -------------------------------------------------------------

    def connect(self, name: str):
        """An SDK handle on the running machine *name* (never boots it: it is running)."""
        import smol

        try:
            return smol.Machine.connect(name, smol.ConnectOptions(target="local", wait_for_ports=False))
        except smol.SmolError as err:
            raise EnvironmentProblem(f"smolvm machine {name!r} is not reachable: [{err.code}] {err}") from None

    def list(self, labels: dict[str, str]):
        """Every local machine carrying all of *labels*, from smolvm's database (none is started)."""
        import smol

        try:
            return smol.Machine.list(smol.ConnectOptions(target="local"), labels=labels)
        except smol.SmolError as err:
            raise EnvironmentProblem(f"smolvm could not list its machines: [{err.code}] {err}") from None


def _relay_stderr(stream) -> None:
    for line in iter(stream.readline, b""):
        if not line.startswith(PACKED_ASSETS_NOTE.encode()):
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()
