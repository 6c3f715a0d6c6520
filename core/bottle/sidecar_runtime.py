"""Start and watch a bottle's sidecar: the only way out of the sandbox.

The sidecar is a container of the sidecar image, attached to the bottle's
internal network (as ``sidecar``) and to the shared egress network. What it
needs that is secret arrives in one JSON bundle on its stdin: the CA key and
the credential values. Secrets therefore never touch an image layer, a label,
argv, the sidecar's environment or the host's disk; the sidecar's init keeps
them in a tmpfs. The rest (policy, audit log) lives in the bottle's state dir,
bind-mounted. Its daemons run with no capability, as an unprivileged user of
their own when bottle runs as root (:func:`sidecar_user`); a local upstream
repository is served to the gate by the host, never mounted
(``bottle_git.upstream_relay``).

Whatever the backend, the sidecar runs on the Docker engine: the backend
decides how its sandbox reaches it.
"""

import json
import os
import socket
import subprocess
import threading
import _thread
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from docker.errors import APIError, NotFound

from bottle_egress.authority import generate_ca
from bottle.display import terminal_safe
from bottle.engine import remove_container, require_image
from bottle.errors import EnvironmentProblem, UsageError
from bottle.plan import Plan
from bottle_sidecar.audit import AuditLog
from bottle_supervise_sidecar.proposals import Queue
from bottle_git.upstream_relay import UpstreamRelay

EGRESS_NETWORK = "bottle-egress"
LABEL_SHARED = "bottle.shared"
LABEL_ROLE = "bottle.role"
READY_LINE = "bottle-sidecar: ready"
SERVICE_DIED = "bottle-sidecar: service "  # "... NAME exited with code N", from the init
READY_TIMEOUT = 60

# Inside the sidecar: secrets on a tmpfs; everything else in the bottle's
# state dir on the host (sidecar/), bind-mounted, so that the host changes the
# policy by writing its own file and the audit log outlives the bottle.
RUN_DIR = "/run/bottle"
STATE_MOUNT = "/bottle/state"  # created by the mount, outside the image user's 0700 home
POLICY_FILE = "policy.json"
AUDIT_FILE = "audit.sqlite"


def sidecar_name(slug: str) -> str:
    return f"bottle-{slug}-sidecar"


def policy_document(plan: Plan, allow: tuple[str, ...] | list[str]) -> dict:
    """The egress policy as the proxy reads it (no secret in it: placeholders only)."""
    return {
        "bottle": plan.slug,
        "allow": list(allow),
        "secret_patterns": list(plan.egress.secret_patterns),
        "credentials": [
            {"host": c.host, "port": c.port, "path": c.path, "header": c.header, "scheme": c.scheme, "name": c.env,
             "placeholder": c.placeholder, "on_secret": c.on_secret or ""}
            for c in plan.egress.credentials
        ],
        "on_secret": [{"rule": rule, "mode": mode} for rule, mode in plan.egress.on_secret.items()],
        "secret_exempt": {"detectors": list(plan.egress.secret_exempt.detectors),
                          "values": list(plan.egress.secret_exempt.values)},
    }


GIT_CREDENTIAL = "bottle-git-upstream"  # its name in the sidecar's credentials file
LOCAL_UPSTREAM = "/bottle/upstream"  # what the gate calls a local upstream, which it reaches on:
UPSTREAM_SOCKET = "/bottle/upstream.sock"  # the host's relay (bind-mounted)
QUEUE_MOUNT = "/bottle/supervise"
QUEUE_DIR = "supervise"  # in the state root: the proposal queue every bottle shares with the operator
QUEUE_FILE = "queue.sqlite"
#: The sidecar image's ``sidecar`` user and group (sidecar.Dockerfile makes them): above the
#: ranges distributions give accounts (system ones below 1000, people's from 1000, Debian's
#: on-demand ones 60000-64999, systemd's dynamic users 61184-65519), below nobody (65534),
#: and within the 65536 ids any user-namespace mapping of an engine covers.
SIDECAR_UID = 65531


def sidecar_user() -> tuple[int, int]:
    """The uid and gid the sidecar's daemons run as: bottle's own user's, unless that is root.

    A root operator's sidecar runs as the image's ``sidecar`` user (:data:`SIDECAR_UID`),
    and what it writes on the host (its part of the bottle's state dir, the proposal
    queue) is handed to that user (:func:`hand_over`); root goes on reading and writing
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


def _git_credential(credential) -> str:
    if credential.env:
        value = os.environ.get(credential.env)
        if not value:
            raise UsageError(
                f"Field `git.credential.env`: the git credential is read from the host environment "
                f"variable {credential.env}, which is not set."
            )
        return value
    try:
        return credential.file.read_text()
    except OSError as err:
        raise UsageError(f"Field `git.credential.file`: cannot read {credential.file}: {err}") from None


def read_credentials(plan: Plan) -> dict[str, str]:
    """The real credential values, from the host's environment and files, at launch."""
    values = {}
    if plan.git is not None and plan.git.credential is not None:
        values[GIT_CREDENTIAL] = _git_credential(plan.git.credential)
    for route in plan.egress.credentials:
        value = os.environ.get(route.env)
        if not value:
            raise UsageError(
                f"Profile {plan.profile!r} ({', '.join(map(str, plan.profile_files))}): field `credentials`: "
                f"the credential for {route.host} is read from the host environment variable {route.env}, "
                "which is not set."
            )
        values[route.env] = value
    return values


def sidecar_state(state_dir: Path) -> Path:
    """The host directory the sidecar sees as its state (policy, audit log)."""
    return state_dir / "sidecar"


def audit_path(state_dir: Path) -> Path:
    return sidecar_state(state_dir) / AUDIT_FILE


def policy_path(state_dir: Path) -> Path:
    return sidecar_state(state_dir) / POLICY_FILE


def write_policy(state_dir: Path, document: dict) -> None:
    """Replace the policy atomically: the proxy never reads half a file."""
    target = policy_path(state_dir)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=2))
    hand_over([partial])  # the proxy reads it, whatever the umask
    os.replace(partial, target)


def protected_refs(git) -> list[str]:
    """The profile's protected refs, or upstream's default branch (asked of upstream now)."""
    if git.protected is not None:
        return list(git.protected)
    try:
        out = subprocess.run(
            ["git", "ls-remote", "--symref", "--", git.upstream, "HEAD"],
            capture_output=True, text=True, timeout=20,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        ).stdout
    except subprocess.TimeoutExpired:
        out = ""
    heads = [line[5:].split("\t")[0] for line in out.splitlines() if line.startswith("ref: ")]
    return heads[:1] or ["refs/heads/main", "refs/heads/master"]


def gate_config(plan: Plan) -> dict:
    git = plan.git
    credential = None
    if git.credential is not None:
        credential = {"kind": git.credential.kind, "name": GIT_CREDENTIAL, "username": git.credential.username}
    config = {
        "bottle": plan.slug,
        "upstream": LOCAL_UPSTREAM if git.local_upstream else git.upstream,
        "push_refs": list(git.push_refs),
        "fetch_refs": list(git.fetch_refs),
        "protected": protected_refs(git),
        "allow_force": git.allow_force,
        "max_push_mb": git.max_push_mb,
        "max_push_refs": git.max_push_refs,
        "credential": credential,
    }
    if git.known_hosts:
        config["known_hosts"] = git.known_hosts
    if git.local_upstream:
        config["relay"] = UPSTREAM_SOCKET
    return config


def _prepare_mounts(plan: Plan, ca_cert_pem: bytes, stack: ExitStack) -> dict:
    """The host side of what the sidecar sees, made now (and what must be stopped on *stack*);
    returns the bind mounts.

    CA certificate (public), policy, gate config and audit log in the bottle's
    state dir, which is the sidecar's user's; the relay serving a local
    upstream; the operator's proposal queue.
    """
    plan.sidecar.ca_cert.write_bytes(ca_cert_pem)
    state = sidecar_state(plan.state_dir)
    state.mkdir(mode=0o700)
    write_policy(plan.state_dir, policy_document(plan, plan.egress.allow))
    # The schema exists before any reader, and the budget before any writer.
    AuditLog(audit_path(plan.state_dir), plan.slug, max_bytes=plan.sidecar.audit_max_mb * 1024 * 1024).close()
    binds = {str(state): {"bind": STATE_MOUNT, "mode": "rw"}}
    if plan.git is not None:
        (state / "gitgate.json").write_text(json.dumps(gate_config(plan), indent=2))
        if plan.git.local_upstream:
            relay = UpstreamRelay(plan.git.local_upstream)
            stack.callback(relay.stop)
            relay.start(sidecar_user())
            binds[str(relay.socket_path)] = {"bind": UPSTREAM_SOCKET, "mode": "rw"}
    hand_over([state, *state.iterdir()])
    if plan.supervise is not None:
        binds[str(prepare_queue(plan.state_dir.parent))] = {"bind": QUEUE_MOUNT, "mode": "rw"}
    return binds


def prepare_queue(state_root: Path) -> Path:
    """The directory holding the queue (created, with the queue, if missing):
    what a bottle's sidecar gets bind-mounted. It is the sidecars' user's alone
    (0700): the operator's, or the sidecar user's when bottle runs as root
    (``sidecar_user``; root answers all the same). No other local user may
    read the asks or, worse, answer them."""
    directory = Path(state_root) / QUEUE_DIR
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    Queue(directory / QUEUE_FILE)
    hand_over([directory, *directory.iterdir()])
    return directory


def egress_network(client):
    """The shared network sidecars reach the outside through (created on first use)."""
    try:
        return client.networks.get(EGRESS_NETWORK)
    except NotFound:
        try:
            return client.networks.create(EGRESS_NETWORK, driver="bridge", labels={LABEL_SHARED: "egress"})
        except APIError:  # another bottle created it meanwhile
            return client.networks.get(EGRESS_NETWORK)


def _bundle(plan: Plan, ca, credentials: dict[str, str]) -> bytes:
    egress_argv = [
        "python", "-m", "bottle_egress_sidecar.egress",
        "--listen-host", "0.0.0.0", "--listen-port", str(plan.sidecar.proxy_port),
        "--confdir", f"{RUN_DIR}/mitmproxy", "--policy", f"{STATE_MOUNT}/{POLICY_FILE}",
        "--credentials", f"{RUN_DIR}/credentials.json", "--audit", f"{STATE_MOUNT}/{AUDIT_FILE}",
    ]
    files = [
        {"path": f"{RUN_DIR}/mitmproxy/mitmproxy-ca.pem", "content": (ca.key_pem + ca.cert_pem).decode(), "mode": 0o600},
        {"path": f"{RUN_DIR}/credentials.json", "content": json.dumps(credentials), "mode": 0o600},
    ]
    if plan.egress.trust:
        upstream_ca = f"{RUN_DIR}/upstream-ca.pem"
        pem = "".join(path.read_text() for path in plan.egress.trust)
        files.append({"path": upstream_ca, "content": pem, "mode": 0o644})
        egress_argv += ["--upstream-extra-ca", upstream_ca]
    services = [{"name": "egress", "argv": egress_argv, "ready": "bottle-egress: listening"}]
    if plan.git is not None:
        gate_argv = [
            "python", "-m", "bottle_gitgate_sidecar.gitgate",
            "--listen-host", "0.0.0.0", "--listen-port", str(plan.sidecar.gate_port),
            "--repo", f"{STATE_MOUNT}/gate.git", "--config", f"{STATE_MOUNT}/gitgate.json",
            "--credentials", f"{RUN_DIR}/credentials.json", "--audit", f"{STATE_MOUNT}/{AUDIT_FILE}",
        ]
        services.append({"name": "gitgate", "argv": gate_argv, "ready": "bottle-gitgate: listening"})
    if plan.supervise is not None:
        deny_file = f"{RUN_DIR}/supervise-deny.json"
        files.append({"path": deny_file, "content": json.dumps(list(plan.supervise.deny)), "mode": 0o644})
        supervise_argv = [
            "python", "-m", "bottle_supervise_sidecar.server",
            "--listen-host", "0.0.0.0", "--listen-port", str(plan.sidecar.supervise_port),
            "--queue", f"{QUEUE_MOUNT}/queue.sqlite", "--audit", f"{STATE_MOUNT}/{AUDIT_FILE}",
            "--bottle", plan.slug, "--agent", plan.agent,
            "--answer-timeout", str(plan.supervise.answer_timeout), "--deny", deny_file,
        ]
        services.append({"name": "supervise", "argv": supervise_argv, "ready": "bottle-supervise: listening"})
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


def start_sidecar(client, plan: Plan, internal_network: str, stack: ExitStack) -> Sidecar:
    """Start the sidecar on *internal_network* (not waiting for it); all is registered on *stack*."""
    require_image(client, plan.sidecar.image, "sidecar")
    credentials = read_credentials(plan)
    ca = generate_ca(plan.slug)
    binds = _prepare_mounts(plan, ca.cert_pem, stack)
    outside = egress_network(client)
    name = sidecar_name(plan.slug)
    stack.callback(remove_container, client.api, name)
    api = client.api
    uid, gid = sidecar_user()
    config = api.create_container_config(
        plan.sidecar.image,
        # The init reads its bundle from stdin and, like its services, runs as
        # the sidecar's user (it switches to no other), with no capability.
        command=["--config", "-", "--user", ""],
        user=f"{uid}:{gid}",
        hostname="sidecar",
        labels={**plan.labels, LABEL_ROLE: "sidecar"},
        stdin_open=True,
        networking_config=api.create_networking_config(
            {internal_network: api.create_endpoint_config(aliases=[plan.sidecar.hostname])}
        ),
        host_config=api.create_host_config(
            network_mode=internal_network,
            tmpfs={RUN_DIR: f"mode=0700,uid={uid},gid={gid},size=16m"},
            binds=binds,
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
    _send_stdin(container, _bundle(plan, ca, credentials))
    return Sidecar(container, stack)
