"""Start and watch a bottle's sidecar: the only way out of the sandbox.

The sidecar is a container of the sidecar image, attached to the bottle's
internal network (as ``plan.sidecar.hostname``) and to the shared outside
network. It runs the services the plugins planned (``bottle.sidecar.service``),
with what their ``bottle_sidecar_prepare`` put in place: what is secret
arrives in one JSON bundle on its stdin, so secrets never touch an image
layer, a label, argv, the sidecar's environment or the host's disk; the
sidecar's init keeps them in a tmpfs. The rest (the services' files, the
audit log) lives in the bottle's state dir, bind-mounted. Its daemons run
with no capability, as an unprivileged user of their own when bottle runs as
root (:func:`sidecar_user`).

Whatever the backend, the sidecar runs on the Docker engine: the backend
decides how its sandbox reaches it.
"""

import json
import os
import socket
import threading
import _thread
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, NotFound

from bottle.display import terminal_safe
from bottle.engine import remove_container, require_image
from bottle.errors import EnvironmentProblem
from bottle.plan import Plan
from bottle.sidecar.host import SidecarHost, StartedSidecar
from bottle.sidecar.kit import image_lacks, kit_part
from bottle.sidecar.service import AUDIT_FILE, CREDENTIALS, RUN_DIR, STATE_MOUNT, ImagePart, SidecarSetup
from bottle_sidecar.audit import AuditLog

OUTSIDE_NETWORK = "bottle-outside"  # the one network sidecars share, with a route out
LABEL_SHARED = "bottle.shared"
LABEL_ROLE = "bottle.role"
READY_LINE = "bottle-sidecar: ready"
SERVICE_DIED = "bottle-sidecar: service "  # "... NAME exited with code N", from the init
READY_TIMEOUT = 60


def sidecar_name(slug: str) -> str:
    return f"bottle-{slug}-sidecar"


#: The sidecar image's ``sidecar`` user and group (sidecar.Dockerfile makes them): above the
#: ranges distributions give accounts (system ones below 1000, people's from 1000, Debian's
#: on-demand ones 60000-64999, systemd's dynamic users 61184-65519), below nobody (65534),
#: and within the 65536 ids any user-namespace mapping of an engine covers.
SIDECAR_UID = 65531


def sidecar_user() -> tuple[int, int]:
    """The uid and gid the sidecar's daemons run as: bottle's own user's, unless that is root.

    A root operator's sidecar runs as the image's ``sidecar`` user (:data:`SIDECAR_UID`),
    and what it writes on the host (its part of the bottle's state dir, a queue it
    shares with the operator) is handed to that user (:func:`hand_over`); root goes on reading and writing
    there, as root reads and writes anything. Anyone else cannot give files away, so
    their sidecar runs as themselves: unprivileged already, and what it writes stays
    theirs alone.
    """
    if os.geteuid() == 0:
        return SIDECAR_UID, SIDECAR_UID
    return os.getuid(), os.getgid()


def hand_over(paths) -> None:
    """Give *paths* to the sidecar's user, when that is not bottle's own (bottle runs as root)."""
    uid, gid = sidecar_user()
    if uid != os.getuid():
        for path in paths:
            os.chown(path, uid, gid, follow_symlinks=False)


def sidecar_state(state_dir: Path) -> Path:
    """The host directory the sidecar sees as its state (policy, audit log)."""
    return state_dir / "sidecar"


def audit_path(state_dir: Path) -> Path:
    return sidecar_state(state_dir) / AUDIT_FILE


def needed_parts(plan: Plan, parts: Mapping[str, ImagePart]) -> tuple[ImagePart, ...]:
    """The image parts the planned services need, the kit's first; a part no loaded plugin declares is an error
    naming the service (its plugin says it needs what nobody provides)."""
    needed = [kit_part()]
    for service in plan.sidecar.services:
        if service.part is None or service.part in [part.name for part in needed]:
            continue
        if service.part not in parts:
            raise EnvironmentProblem(f"The sidecar service {service.name!r} needs the image part {service.part!r}, "
                                     "which no loaded plugin declares (bottle_sidecar_image_parts).")
        needed.append(parts[service.part])
    return tuple(needed)


def _lacking(setup: SidecarSetup):
    """For require_image: what a sidecar image with these labels lacks of *setup*'s parts, as a sentence."""

    def lacks(labels: Mapping[str, str]) -> str | None:
        missing = image_lacks(labels, setup.parts)
        if not missing:
            return None
        return (f"it lacks the part{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} this bottle's "
                "services need (built before the plugin was installed, or from another version of it)")

    return lacks


def prepare(plan: Plan, plugins) -> SidecarSetup:
    """The sidecar's state dir (the bottle's, bind-mounted) and what the plugins put in place for it
    (``bottle_sidecar_prepare``): their files, secrets and mounts, before its container is made. A missing
    secret stops the launch here, with the message of the field that asked for it."""
    state = sidecar_state(plan.state_dir)
    state.mkdir(mode=0o700, exist_ok=plan.resume)  # a resumed bottle's: its audit log goes on
    setup = SidecarSetup(state_dir=state, parts=needed_parts(plan, plugins.image_parts))
    setup.mount(state, STATE_MOUNT)
    plugins.hook.bottle_sidecar_prepare(plan=plan, sidecar=setup)
    hand_over([state, *state.rglob("*")])
    return setup


def outside_network(client):
    """The shared network sidecars reach the outside through (created on first use)."""
    try:
        return client.networks.get(OUTSIDE_NETWORK)
    except NotFound:
        try:
            return client.networks.create(OUTSIDE_NETWORK, driver="bridge", labels={LABEL_SHARED: "outside"})
        except APIError:  # another bottle created it meanwhile
            return client.networks.get(OUTSIDE_NETWORK)


def _bundle(plan: Plan, setup: SidecarSetup) -> bytes:
    """The init's config, sent on stdin: the services to start and the tmpfs files, secrets included."""
    files = [*setup.files, {"path": CREDENTIALS, "content": json.dumps(setup.secrets), "mode": 0o600}]
    services = [{"name": s.name, "argv": list(s.argv), "ready": s.ready} for s in plan.sidecar.services]
    return json.dumps({"files": files, "services": services}).encode()


def _send_stdin(container, data: bytes) -> None:
    sock = container.attach_socket(params={"stdin": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    try:
        raw.sendall(data)
        with suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
    finally:
        sock.close()


def _wait_ready(container) -> None:
    lines: list[str] = []
    timer = threading.Timer(READY_TIMEOUT, lambda: _stop_quietly(container))
    timer.start()
    try:
        buffer = b""
        for chunk in container.logs(stream=True, follow=True):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                text = line.decode(errors="replace")
                lines.append(terminal_safe(text))  # shown in the error below (see _last_output)
                if text.strip() == READY_LINE:
                    return
    finally:
        timer.cancel()
    # The init's report of a dead service repeats that service's last lines:
    # from there on, each is said once.
    died = next((at for at, line in enumerate(lines) if line.startswith(SERVICE_DIED)), None)
    tail = "\n".join(lines[died:] if died is not None else lines[-15:]) or "(no output)"
    raise EnvironmentProblem(f"The sidecar of bottle {container.name} did not become ready:\n{tail}")


def _last_output(container, lines: int) -> str:
    """The container's last *lines* of output, each escaped: they go to the
    operator's terminal, and the sidecar's daemons log what the agent sent
    (a TLS client's server name, a ref name, an exception's message)."""
    output = container.logs(tail=lines).decode(errors="replace")
    return "\n".join(map(terminal_safe, output.split("\n")))


def _stop_quietly(container) -> None:
    with suppress(APIError):
        container.kill()


@dataclass
class Sidecar:
    """A started sidecar; :meth:`wait_ready` blocks until its daemons answer.

    Starting and waiting are apart so that the sandbox can be created and
    provisioned while the sidecar's daemons start.
    """

    container: object
    stack: ExitStack
    watcher: "SidecarWatch | None" = None

    def wait_ready(self) -> None:
        if self.watcher is None:
            _wait_ready(self.container)
            self.watcher = SidecarWatch(self.container)
            self.stack.callback(self.watcher.stop)

    def failure(self) -> str | None:
        """Why the sidecar stopped, if it did (asked of the engine: the watcher may be late)."""
        if self.watcher is None:
            return None
        if self.watcher.died is None:
            try:
                self.container.reload()
            except (APIError, OSError):  # removed: stopped on purpose, not died
                return None
            logs = _last_output(self.container, 30)
            # The init says so the moment a daemon dies, before it stops the rest.
            if self.container.status in ("exited", "dead") or SERVICE_DIED in logs:
                return logs[logs.find(SERVICE_DIED):] if SERVICE_DIED in logs else logs
        return self.watcher.died


class SidecarWatch:
    """Interrupts the launcher if the sidecar dies while the bottle runs.

    Without its sidecar a bottle has no way out at all; carrying on would only
    leave the agent hanging, so the run stops with the sidecar's last words.
    """

    def __init__(self, container):
        self.container = container
        self.died: str | None = None
        self._stopping = False
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        try:
            result = self.container.wait()
            # Removed (by teardown, `bottle stop` or `bottle gc`) is not "died":
            # those stop the agent themselves.
            logs = _last_output(self.container, 15)
        except (APIError, OSError):
            return
        if self._stopping:
            return
        self.died = f"exit code {result.get('StatusCode')}:\n{logs}"
        _thread.interrupt_main()

    def stop(self) -> None:
        self._stopping = True


def start_sidecar(client, plan: Plan, setup: SidecarSetup, internal_network: str, stack: ExitStack) -> Sidecar:
    """Start the sidecar on *internal_network* (not waiting for it) with what *setup* holds; its watcher is
    registered on *stack*, and its removal must be already (see :meth:`DockerSidecarHost.start`)."""
    require_image(client, plan.sidecar.image, "sidecar", _lacking(setup))
    # The schema exists before any reader, and the budget before any writer; a bottle
    # that never got this far has no log (and no summary: its error says it all).
    audit = audit_path(plan.state_dir)
    AuditLog(audit, plan.slug, max_bytes=plan.sidecar.audit_max_mb * 1024 * 1024).close()
    hand_over([audit])
    outside = outside_network(client)
    name = sidecar_name(plan.slug)
    api = client.api
    uid, gid = sidecar_user()
    config = api.create_container_config(
        plan.sidecar.image,
        # The init reads its bundle from stdin and, like its services, runs as
        # the sidecar's user (it switches to no other), with no capability.
        command=["--config", "-", "--user", ""],
        user=f"{uid}:{gid}",
        hostname=plan.sidecar.hostname,
        labels={**plan.labels, LABEL_ROLE: "sidecar"},
        stdin_open=True,
        networking_config=api.create_networking_config(
            {internal_network: api.create_endpoint_config(aliases=[plan.sidecar.hostname])}
        ),
        host_config=api.create_host_config(
            network_mode=internal_network,
            tmpfs={RUN_DIR: f"mode=0700,uid={uid},gid={gid},size=16m"},
            binds=setup.binds,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="512m",
            pids_limit=256,
            init=False,  # the image's tini is PID 1
        ),
    )
    # The SDK has no parameter for StdinOnce, which closes the sidecar's stdin
    # (ending the bundle) when our attachment closes.
    config["StdinOnce"] = True
    container = client.containers.get(api.create_container_from_config(config, name)["Id"])
    outside.connect(container)
    container.start()
    _send_stdin(container, _bundle(plan, setup))
    return Sidecar(container, stack)


class DockerSidecarHost(SidecarHost):
    """The sidecar as a container of the local Docker engine, started in a worker thread: its services take
    longest to start, so the sandbox is made meanwhile."""

    def __init__(self, client):
        self.client = client

    def start(self, plan: Plan, prepare: Callable[[], SidecarSetup], network: str,
              stack: ExitStack) -> "StartedDockerSidecar":
        # Registered before the worker starts, so before the backend's own teardown of its containers,
        # which therefore runs first and removes the sidecar beside the sandbox, at once; this one then
        # finds it gone, or removes what an early failure left.
        stack.callback(remove_container, self.client.api, sidecar_name(plan.slug))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sidecar-{plan.slug}")
        starting = pool.submit(self._start, plan, prepare, network, stack)
        pool.shutdown(wait=False)
        return StartedDockerSidecar(starting)

    def _start(self, plan: Plan, prepare: Callable[[], SidecarSetup], network: str, stack: ExitStack) -> Sidecar:
        setup = prepare()
        for stop in setup.callbacks:
            stack.callback(stop)
        return start_sidecar(self.client, plan, setup, network, stack)


class StartedDockerSidecar(StartedSidecar):
    def __init__(self, starting: Future):
        self._starting = starting

    def _sidecar(self) -> Sidecar:
        return self._starting.result()

    def address(self, network: str) -> str:
        container = self._sidecar().container
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        if not address:
            raise EnvironmentProblem(f"The sidecar {container.name} has no address on {network}.")
        return address

    def wait_ready(self) -> None:
        self._sidecar().wait_ready()

    def failure(self) -> str | None:
        if not self._starting.done() or self._starting.exception() is not None:
            return None
        return self._starting.result().failure()

    def settle(self) -> None:
        wait([self._starting])
