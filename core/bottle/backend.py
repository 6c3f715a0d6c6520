"""What a backend is: the interface every sandbox technology implements.

A backend creates, starts, execs into, copies into, stops and destroys
sandboxes. It knows nothing of provisioners; provisioners talk to a sandbox
only through the :class:`Bottle` handle.
"""

import abc
import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from bottle.plan import Plan, PlanFile
from bottle.sidecar.host import SidecarHost, StartedSidecar

#: Labels every backend puts on every resource it creates, so that
#: ``bottle ls`` and ``bottle gc`` find them from any process.
LABEL_SLUG = "bottle.slug"
LABEL_AGENT = "bottle.agent"
LABEL_BACKEND = "bottle.backend"
LABEL_PID = "bottle.pid"
LABEL_HOST = "bottle.host"


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, why (shown by ``bottle doctor``)."""

    ok: bool
    reason: str = ""
    #: Not ok for a reason of this host (no KVM, no hardware virtualization, no
    #: permission), rather than a broken install or a failing call: the only
    #: "no" for which the integration tests may skip, even under CI=true.
    host_limit: bool = False


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class BottleInfo:
    """One bottle as ``bottle ls`` shows it."""

    slug: str
    agent: str
    backend: str
    status: str
    created: str
    launcher_pid: int | None
    launcher_host: str

    @classmethod
    def from_labels(cls, labels: dict, backend: str, status: str, created: str) -> "BottleInfo":
        """Read back what the launcher wrote into a resource's labels."""
        pid = labels.get(LABEL_PID, "")
        return cls(
            slug=labels[LABEL_SLUG],
            agent=labels.get(LABEL_AGENT, ""),
            backend=backend,
            status=status,
            created=created,
            launcher_pid=int(pid) if pid.isdigit() else None,
            launcher_host=labels.get(LABEL_HOST, ""),
        )


class Channel(abc.ABC):
    """One connection to a port in a bottle (:meth:`Backend.connect`), as a byte stream both ways."""

    #: Why the connection failed, once :meth:`recv` has returned ``b""`` (nothing answered, say); "" if it did not.
    error: str = ""

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Send *data* to the server in the bottle."""

    @abc.abstractmethod
    def close_write(self) -> None:
        """Tell the server nothing more comes (its read ends), while its answer may still come."""

    @abc.abstractmethod
    def recv(self) -> bytes:
        """What the server sent next; ``b""`` when it is done."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the connection."""


class Bottle(abc.ABC):
    """A running sandbox, as provisioners and the launcher see it."""

    slug: str
    #: Whether the agent's home and workdir outlive the run (for ``bottle resume``); a backend that
    #: cannot keep them says False, and what would be lost at the end is kept another way.
    durable: bool = True

    @abc.abstractmethod
    def exec(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run *argv* to completion and capture its output (as the guest user by default)."""

    @abc.abstractmethod
    def put_files(self, files: Sequence[PlanFile], *, uid: int, gid: int) -> None:
        """Copy all *files* (files or whole directories) into the guest in one go.

        Parent directories that do not exist are created, owned by *uid*.
        """

    @abc.abstractmethod
    def run_agent(self, argv: Sequence[str], *, env: dict[str, str], interactive: bool) -> int:
        """Run the agent in the foreground, return its exit code.

        Interactive runs inherit the user's terminal; headless runs stream the
        agent's output to ours.
        """


class Backend(abc.ABC):
    """A sandbox technology, registered by a plugin through ``bottle_register_backends``."""

    name: str

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Can a sandbox run here? Quick, never hangs, says why not."""

    @abc.abstractmethod
    def open_network(self, plan: Plan, stack: contextlib.ExitStack) -> str:
        """Create the bottle's internal network (no route out: the sidecar is the only way) and return its name.

        Every resource is registered on *stack* for teardown the moment it
        exists, so a failure half-way leaves nothing behind.
        """

    def sidecar_host(self) -> SidecarHost:
        """Where this backend's sidecars run: the local Docker engine, unless the backend places them itself."""
        from bottle.engine import docker_client
        from bottle.sidecar.runtime import DockerSidecarHost

        return DockerSidecarHost(docker_client())

    @abc.abstractmethod
    def open(self, plan: Plan, stack: contextlib.ExitStack, network: str, sidecar: StartedSidecar) -> Bottle:
        """Create and start the sandbox for *plan* on *network*, while *sidecar* starts (ask it for its address
        if the guest needs it; it is waited for after the plan's files are copied in). Register on *stack*
        every resource that runs the moment it exists; the agent's home and workdir are durable: made on the
        bottle's first run, found again on the next (``bottle resume``), kept until :meth:`remove`."""

    @abc.abstractmethod
    def list(self) -> list[BottleInfo]:
        """Every bottle of this backend on this machine, found by label: a running one with its
        sandbox's status, one whose run has ended (only its durable state is left) as ``stopped``."""

    @abc.abstractmethod
    def stop(self, slug: str) -> bool:
        """End bottle *slug*'s run: remove what runs (sandbox, sidecar, network) and keep its durable
        state (the agent's home and workdir), for ``bottle resume``; False if nothing ran."""

    @abc.abstractmethod
    def remove(self, slug: str) -> bool:
        """Destroy everything of *slug*, its durable state included; False if there was nothing."""

    @abc.abstractmethod
    def exec_interactive(self, slug: str, argv: Sequence[str], *, user: str | None) -> int:
        """``bottle exec``: run *argv* in a running bottle with the user's terminal."""

    def copy_out(self, slug: str, path: str) -> Iterator[bytes]:
        """``bottle cp SLUG:PATH ...``: a tar stream of *path* (absolute) in the running bottle *slug*.

        Its one top-level member is *path*'s last component (a directory with
        everything beneath it, links as links). Raises :class:`FileNotFoundError`
        when there is no *path*, before any of the stream is read. What comes out
        was written by the agent: the caller unpacks it with
        :func:`bottle.safe_tar.unpack_beside`.
        """
        from bottle.errors import EnvironmentProblem

        raise EnvironmentProblem(f"backend {self.name!r} cannot copy files out of a bottle.")

    def copy_in(self, slug: str, path: str, tar: bytes | Iterable[bytes]) -> None:
        """``bottle cp ... SLUG:PATH``: unpack the tar stream *tar* into the directory *path* (absolute)
        of the running bottle *slug*, everything in it owned by the guest user, who can then use it.

        Raises :class:`FileNotFoundError` when there is no *path* and
        :class:`NotADirectoryError` when it is not a directory, having written nothing.
        """
        from bottle.errors import EnvironmentProblem

        raise EnvironmentProblem(f"backend {self.name!r} cannot copy files into a bottle.")

    def connect(self, slug: str, port: int) -> "Channel":
        """``bottle run --publish``, ``bottle ports``: a new connection to *port* of the running bottle *slug*,
        made from its sidecar's side (see :mod:`bottle.ports`); raises :class:`bottle.errors.EnvironmentProblem`
        when the bottle is not running."""
        from bottle.errors import EnvironmentProblem

        raise EnvironmentProblem(f"backend {self.name!r} cannot publish a bottle's port.", exit_code=2)

    def disk_bound(self, image: str, size: str) -> str | None:
        """How a bottle of *image* is held to *size* of disk on this machine, in a sentence
        for ``bottle doctor``; None when the backend does not say."""
        return None
