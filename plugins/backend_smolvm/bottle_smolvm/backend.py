"""The smolvm backend: each bottle is a libkrun microVM whose only way out is its sidecar.

One bottle = one smolvm machine ``bottle-SLUG`` (labelled with the plan's
labels, so ``bottle ls``/``gc`` find it from any process through smolvm's
machine database) + the sidecar container and a Docker network
``bottle-SLUG`` (labelled too). The machine runs the same agent image as the
Docker backend, from a ``docker save`` archive cached by image id (see
:mod:`bottle_smolvm.images`); its workload is an idle ``sleep``, and the
agent and the provisioners run as execs as the guest user. Resources (the
plan's, defaults included: see ``bottle.limits``): ``cpus`` become whole
vCPUs (rounded up) and ``memory`` MiB; a lifted one leaves smolvm's own size.
smolvm has no process-count limit, so ``pids`` is not enforced here, and the
guest writes to the machine's own disk images, whose size smolvm sets, not
``disk``: the VM as a whole is bounded by its vCPUs, memory and disks.

Networking: how the guest reaches its sidecar, and nothing else
---------------------------------------------------------------

The sidecar always runs on Docker. The backend creates an *internal* Docker
network for it, like the Docker backend's but with the host keeping its
gateway address on the bridge, so that the host (where the VMM runs) reaches
the sidecar's address; ``internal`` still gives that network no route out.

The guest gets smolvm's **virtio-net** backend (a NIC whose every flow is
terminated by smolvm's host-side gateway, outside the guest) with an egress
allow list of exactly one address, ``--allow-cidr SIDECAR_IP/32``:

* the gateway drops any TCP flow to another address before opening a host
  socket, so the host's own services, other bottles' sidecars, the bridge
  gateways and the internet are unreachable, whatever the guest does with
  ``HTTPS_PROXY``; smolvm's own floor also refuses loopback and cloud metadata;
* UDP is refused (no ``--allow-udp``);
* DNS is the one thing smolvm's gateway forwards without the allow list, to
  the resolver named by ``--dns``. Pointing it at the sidecar's address makes
  every lookup a question to the sidecar, which serves no DNS: names outside
  the guest do not resolve, so DNS is no tunnel. The guest finds its sidecar
  by name through an ``/etc/hosts`` line written at start.

The allow list has no port field, so the guest reaches every port of its
sidecar's address; the sidecar only listens on the ports of its services,
all of which are there for the guest.

Why not the alternatives: a **port forward** (``-p``) runs from host to guest,
not the way the agent needs; publishing the sidecar on the host's loopback
and allowing the guest loopback would open every loopback service of the host
(and smolvm's floor rightly refuses loopback). **TSI** with the same
allow-cidr would filter TCP the same way, but hands the guest's DNS and socket
calls to libkrun's interception layer, where ``--dns`` and the UDP policy are
not the documented knobs; virtio-net is where smolvm documents both.

The trade-off: unlike the Docker backend's network, the host has an address
on the bottle's network, so local processes on the host can reach the
sidecar's proxy. They are on the host already; the guest is the party held in.

Between runs
------------

A run ends by stopping the machine (``machine stop``), not deleting it: its
own disks hold the agent's home and workdir, for ``bottle resume``. Each run's
sidecar is new and has a new address, so a stopped machine's allow list is
replaced before it starts again (``machine update --reset-allow-list
--allow-cidr NEW/32``, with the plan's resources and environment), and the
``/etc/hosts`` line is written again. ``machine update`` cannot change
``--dns``: a resumed guest's lookups still go to its first sidecar's address,
where nothing answers DNS (no sidecar serves it), so names outside still do
not resolve. ``bottle rm`` deletes the machine.

SDK or CLI, per operation
-------------------------

Said at each call. In short: the CLI for create (only it has ``--dns``,
``--net-backend`` and ``--label``), start and delete (a subprocess with a hard
timeout: a launch or a teardown must never hang in native code) and for
interactive sessions (only it owns a TTY); the SDK for captured execs and the
headless agent (typed errors keep "the command failed" apart from "the machine
failed", and no process per call), for copying files in (one binary upload, no
host temp file) and for listing (it reads smolvm's database, labels included,
without starting anything).
"""

import base64
import contextlib
import math
import os
import queue
import secrets
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

from bottle.backend import (
    LABEL_BACKEND,
    LABEL_SLUG,
    Availability,
    Backend,
    Bottle,
    BottleInfo,
    ExecResult,
)
from bottle.errors import EnvironmentProblem
from bottle.limits import size_bytes
from bottle.plan import Plan, PlanFile
from bottle.tarball import pack

from bottle_smolvm import probe
from bottle_smolvm.images import image_archive
from bottle_smolvm.smolvm import CliError, Smolvm

NAME = "smolvm"
#: Creating a machine from a new archive imports (flattens) the image first.
CREATE_TIMEOUT = 900
START_TIMEOUT = 300
DELETE_TIMEOUT = 60

#: ``bottle cp SLUG:PATH``, as the guest user: *path*'s tar stream as base64 (the SDK's
#: captured output is text, and base64 keeps bytes whole); 66: no such path.
COPY_OUT_SCRIPT = (
    'test -e "$1" || test -L "$1" || exit 66; cd -- "$(dirname -- "$1")" || exit 1; '
    '{ tar -cf - -- "$(basename -- "$1")" || echo "tar exited $?" >&2; } | base64 -w0'
)
#: ``bottle cp ... SLUG:PATH``, as the guest user: unpacks the base64 tar stream on stdin into
#: the directory *path*; 66: no such path, 67: not a directory.
COPY_IN_SCRIPT = 'test -d "$1" || { test -e "$1" && exit 67; exit 66; }; base64 -d | tar -x -f - -C "$1" --no-same-owner'

#: Unpacks the plan files' tar stream where ``put_files`` uploaded it, then removes it.
EXTRACT_SCRIPT = 'tar -x -p --same-owner --numeric-owner -f "$1" -C /; status=$?; rm -f "$1"; exit $status'


def machine_name(slug: str) -> str:
    return f"bottle-{slug}"


def network_name(slug: str) -> str:
    return f"bottle-{slug}"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bottle/smolvm``: the probe's answers and the image archives."""
    value = os.environ.get("XDG_CACHE_HOME")
    base = Path(value) if value and os.path.isabs(value) else Path.home() / ".cache"
    return base / "bottle" / "smolvm"


def memory_mib(spec: str | None) -> int | None:
    """A profile's ``memory`` (``512m``, ``4g``, bytes) in MiB, rounded up."""
    if not spec:
        return None
    return max(1, math.ceil(size_bytes(spec) / 1024**2))


def cpu_count(cpus: float | None) -> int | None:
    """smolvm takes whole vCPUs: a fractional limit is rounded up."""
    return math.ceil(cpus) if cpus else None


# -- argv of each CLI step ------------------------------------------------------


def create_args(plan: Plan, name: str, archive: Path, sidecar_ip: str) -> list[str]:
    args = ["machine", "create", "--name", name, "--image", str(archive)]
    for key, value in sorted(plan.labels.items()):
        args += ["--label", f"{key}={value}"]
    # The network: see the module docstring.
    args += ["--net-backend", "virtio-net", "--allow-cidr", f"{sidecar_ip}/32", "--dns", sidecar_ip]
    if (cpus := cpu_count(plan.resources.cpus)) is not None:
        args += ["--cpus", str(cpus)]
    if (mem := memory_mib(plan.resources.memory)) is not None:
        args += ["--mem", str(mem)]
    for key, value in plan.env.items():  # never a secret (see bottle_plan_env)
        args += ["-e", f"{key}={value}"]
    args += ["-u", plan.guest.user, "-w", plan.guest.workdir, "--", "sleep", "infinity"]
    return args


def start_args(name: str) -> list[str]:
    return ["machine", "start", "--name", name]


def update_args(plan: Plan, name: str, sidecar_ip: str) -> list[str]:
    """A stopped machine made fit for this run: its one allowed destination this run's sidecar, the plan's
    resources and environment (see "Between runs" in the module's docstring)."""
    args = ["machine", "update", "--name", name, "--reset-allow-list", "--allow-cidr", f"{sidecar_ip}/32"]
    if (cpus := cpu_count(plan.resources.cpus)) is not None:
        args += ["--cpus", str(cpus)]
    if (mem := memory_mib(plan.resources.memory)) is not None:
        args += ["--mem", str(mem)]
    for key, value in plan.env.items():
        args += ["-e", f"{key}={value}"]
    return args


def stop_args(name: str) -> list[str]:
    return ["machine", "stop", "--name", name]


def delete_args(name: str) -> list[str]:
    return ["machine", "delete", "--name", name, "--force"]


def exec_tty_args(
    name: str, argv: Sequence[str], *, user: str | None, env: dict[str, str] | None = None, workdir: str | None = None
) -> list[str]:
    args = ["machine", "exec", "--name", name, "-i", "-t"]
    if user:
        args += ["-u", user]
    if workdir:
        args += ["-w", workdir]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    return [*args, "--", *argv]


def hosts_line_argv(address: str, hostname: str) -> list[str]:
    return ["sh", "-c", 'printf "%s\\t%s\\n" "$1" "$2" >> /etc/hosts', "sh", address, hostname]


# -- running native calls without losing Ctrl-C -----------------------------------


def interruptible(call: Callable, *args, **kwargs):
    """Run a blocking SDK call in a worker thread; the main thread stays interruptible.

    The native engine blocks without returning to Python, so a Ctrl-C (or the
    sidecar watch's interrupt) would wait for the call to end. Here the main
    thread waits on an event instead and raises at once; the abandoned call
    ends when teardown deletes the machine.
    """
    done = threading.Event()
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="smolvm-call").start()
    while not done.wait(0.2):
        pass
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _sdk_errors():
    """The SDK's error type, to turn into bottle's (imported on first use)."""
    from smol import SmolError

    return SmolError


class SmolvmBottle(Bottle):
    def __init__(self, smolvm: Smolvm, plan: Plan, name: str):
        self.smolvm = smolvm
        self.plan = plan
        self.slug = plan.slug
        self.name = name
        self._machine = None

    @property
    def machine(self):
        if self._machine is None:
            self._machine = self.smolvm.connect(self.name)
        return self._machine

    def _options(self, *, user=None, env=None, workdir=None):
        from smol import ExecOptions

        # The machine was created with the plan's env; it is passed again so
        # that an exec sees it as a Docker exec sees its container's.
        return ExecOptions(user=user or self.plan.guest.user, env={**self.plan.env, **(env or {})}, workdir=workdir)

    def exec(self, argv, *, user=None, env=None, workdir=None) -> ExecResult:
        # SDK: a typed error for a machine that failed, the exit code for a
        # command that did; no process per call. (Local output comes back as
        # UTF-8 text: bytes that are not UTF-8 are replaced.)
        try:
            result = interruptible(self.machine.exec, list(argv), self._options(user=user, env=env, workdir=workdir))
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"exec in bottle {self.slug} failed: [{err.code}] {err}") from None
        return ExecResult(result.exit_code, result.stdout.encode(), result.stderr.encode())

    def put_files(self, files: Sequence[PlanFile], *, uid: int, gid: int) -> None:
        # SDK: the whole tar stream is one binary upload (no temp file on the
        # host), then one exec unpacks it as root with its owners.
        archive = pack(files, uid=uid, gid=gid, owned_below=self.plan.guest.home)
        staged = f"/root/.bottle-files-{secrets.token_hex(4)}.tar"
        try:
            interruptible(self.machine.write_file, staged, archive, 0o600)
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"copying the plan's files into bottle {self.slug} failed: [{err.code}] {err}") from None
        result = self.exec(["sh", "-c", EXTRACT_SCRIPT, "sh", staged], user="root")
        if result.exit_code != 0:
            raise EnvironmentProblem(
                f"unpacking the plan's files in bottle {self.slug} failed (exit {result.exit_code}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )

    def add_host(self, address: str, hostname: str) -> None:
        """Name the sidecar in the guest's /etc/hosts (no DNS answers there)."""
        result = self.exec(hosts_line_argv(address, hostname), user="root")
        if result.exit_code != 0:
            raise EnvironmentProblem(
                f"naming the sidecar in bottle {self.slug} failed: {result.stderr.decode(errors='replace').strip()}"
            )

    def run_agent(self, argv, *, env, interactive) -> int:
        if interactive:
            # CLI: only `machine exec -it` gives the agent the user's terminal.
            _need_terminal()
            return self.smolvm.cli_interactive(
                exec_tty_args(self.name, argv, user=self.plan.guest.user, env=dict(env), workdir=self.plan.guest.workdir)
            )
        # SDK: exec_stream separates stdout from stderr and ends with the exit code.
        options = self._options(env=dict(env), workdir=self.plan.guest.workdir)
        try:
            return stream_to_terminal(lambda: self.machine.exec_stream(list(argv), options))
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"the agent could not start in bottle {self.slug}: [{err.code}] {err}") from None


def stream_to_terminal(open_stream: Callable) -> int:
    """Copy an SDK exec stream to our stdout/stderr; return its exit code.

    A reader thread takes the events so that the main thread stays
    interruptible; on an interrupt the command is killed in the guest.
    """
    stream = open_stream()
    events: queue.Queue = queue.Queue()

    def read():
        try:
            for event in stream:
                events.put(event)
        except BaseException as err:
            events.put({"kind": "error", "message": str(err)})
        finally:
            events.put(None)

    try:
        threading.Thread(target=read, daemon=True, name="smolvm-stream").start()
        while True:
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event is None:
                raise EnvironmentProblem("the agent's output stream ended without an exit code")
            kind = event.get("kind")
            if kind in ("stdout", "stderr"):
                out = sys.stdout if kind == "stdout" else sys.stderr
                out.buffer.write(event.get("data", "").encode())
                out.buffer.flush()
            elif kind == "exit":
                return int(event["exit_code"])
            elif kind == "error":
                raise EnvironmentProblem(f"the agent's exec failed: {event.get('message')}")
    except BaseException:
        with contextlib.suppress(Exception):
            stream.kill()
        raise


def _need_terminal() -> None:
    if not sys.stdin.isatty():
        raise EnvironmentProblem(
            "An interactive session needs a terminal on stdin; use --prompt TEXT for a headless run.", exit_code=2
        )


class SmolvmBackend(Backend):
    name = NAME

    def __init__(self, smolvm: Smolvm | None = None, docker=None, cache: Path | None = None):
        self.smolvm = smolvm or Smolvm()
        self._client = docker
        self._cache = cache
        self._availability: Availability | None = None

    @property
    def cache(self) -> Path:
        return self._cache or cache_dir()

    @property
    def client(self):
        if self._client is None:
            from bottle.engine import docker_client

            self._client = docker_client(timeout=60)
        return self._client

    # -- availability ---------------------------------------------------------

    def availability(self) -> Availability:
        if self._availability is None:
            result = probe.probe(self.cache, binary=lambda: self.smolvm.binary)
            if not result.ok:
                self._availability = Availability(False, result.reason, host_limit=result.host_limit)
            else:
                try:
                    self.client  # the sidecar and the image export need Docker
                    self._availability = Availability(True, f"smolmachines {probe.smolmachines_version()}: {result.reason}")
                except EnvironmentProblem as err:
                    self._availability = Availability(False, f"a microVM boots, but the sidecar needs Docker: {err}")
        return self._availability

    # -- one bottle -------------------------------------------------------------

    def sidecar_host(self):
        from bottle.sidecar.runtime import DockerSidecarHost

        return DockerSidecarHost(self.client)  # the sidecar always runs on Docker

    def open_network(self, plan: Plan, stack: contextlib.ExitStack) -> str:
        from bottle.engine import remove_network, require_image

        if plan.runtime not in (None, "auto"):
            raise EnvironmentProblem(f"Profile {plan.profile!r}: field `runtime`: {plan.runtime} runs containers, "
                                     "and the smolvm backend runs microVMs (a kernel of their own already); "
                                     'leave `runtime` unset or "auto" for it.')
        client = self.client
        require_image(client, plan.image, "agent")  # before anything starts: a missing image is one message
        net = network_name(plan.slug)
        # Registered before creation: an interrupt in between must not leak it.
        stack.callback(remove_network, client.api, net)
        # Internal (no route out), but the host keeps its address on the bridge:
        # the VMM, a host process, carries the guest's flows to the sidecar.
        client.networks.create(net, driver="bridge", internal=True, labels=dict(plan.labels))
        return net

    def open(self, plan: Plan, stack: contextlib.ExitStack, network: str, sidecar) -> Bottle:
        name = machine_name(plan.slug)
        address = sidecar.address(network)  # the guest's one allowed destination
        stack.callback(self._stop_machine, name)  # its disks hold the agent's work: stopped, not deleted
        if self._machines(**{LABEL_SLUG: plan.slug}):  # a stopped bottle's, resumed
            self.smolvm.cli(update_args(plan, name, address), what=f"update machine {name}", timeout=START_TIMEOUT)
        else:
            archive, _ = image_archive(self.client, plan.image, self.cache / "images")
            # CLI: creating needs --dns, --net-backend and --label, which the SDK's
            # MachineConfig lacks; start runs detached (the VM outlives the CLI) so
            # that `bottle exec` in another process reaches the same machine.
            self.smolvm.cli(create_args(plan, name, archive, address), what=f"create machine {name}",
                            timeout=CREATE_TIMEOUT)
        self.smolvm.cli(start_args(name), what=f"start machine {name}", timeout=START_TIMEOUT)
        bottle = SmolvmBottle(self.smolvm, plan, name)
        bottle.add_host(address, plan.sidecar.hostname)
        return bottle

    def _stop_machine(self, name: str) -> None:
        # CLI, under a timeout: teardown must end. Gone or stopped already is fine.
        try:
            self.smolvm.cli(stop_args(name), what=f"stop machine {name}", timeout=DELETE_TIMEOUT)
        except CliError as err:
            if err.code not in ("NOT_FOUND", "NOT_RUNNING"):
                raise

    def _delete_machine(self, name: str) -> None:
        # CLI, under a timeout: teardown must end. Already gone (a concurrent
        # `bottle stop` or `gc`) is fine.
        try:
            self.smolvm.cli(delete_args(name), what=f"delete machine {name}", timeout=DELETE_TIMEOUT)
        except CliError as err:
            if err.code != "NOT_FOUND":
                raise

    # -- every bottle -------------------------------------------------------------

    def _info(self, labels: dict, status: str, created: str) -> BottleInfo:
        return BottleInfo.from_labels(labels, self.name, status, created)

    def _machines(self, **labels: str):
        # SDK: reads smolvm's machine database, labels included, starting nothing.
        return [m for m in self.smolvm.list({LABEL_BACKEND: self.name, **labels}) if m.labels.get(LABEL_SLUG)]

    def _docker_leftovers(self, slug: str | None = None):
        filters = [f"{LABEL_BACKEND}={self.name}"] + ([f"{LABEL_SLUG}={slug}"] if slug else [])
        containers = self.client.containers.list(all=True, filters={"label": filters})
        networks = self.client.networks.list(filters={"label": filters})
        return containers, networks

    def list(self) -> list[BottleInfo]:
        found: dict[str, BottleInfo] = {}
        for machine in self._machines():
            status = "stopped" if machine.state != "running" else machine.state  # stopped: its disks are kept
            found[machine.labels[LABEL_SLUG]] = self._info(machine.labels, status, machine.created_at or "")
        # What a launcher killed between "sidecar started" and "machine created" left.
        containers, networks = self._docker_leftovers()
        for container in containers:
            slug = container.labels[LABEL_SLUG]
            if slug not in found:
                found[slug] = self._info(container.labels, f"sidecar {container.status}", container.attrs.get("Created", ""))
        for network in networks:
            labels = network.attrs["Labels"]
            if labels[LABEL_SLUG] not in found:
                found[labels[LABEL_SLUG]] = self._info(labels, "network only", network.attrs.get("Created", ""))
        return list(found.values())

    def remove(self, slug: str) -> bool:
        machines = self._machines(**{LABEL_SLUG: slug})
        for machine in machines:
            self._delete_machine(machine.name)
        return self._remove_docker_side(slug) or bool(machines)

    def stop(self, slug: str) -> bool:
        machines = [m for m in self._machines(**{LABEL_SLUG: slug}) if m.state == "running"]
        for machine in machines:
            self._stop_machine(machine.name)
        return self._remove_docker_side(slug) or bool(machines)

    def _remove_docker_side(self, slug: str) -> bool:
        """Remove the sidecar and the network of *slug* (what runs on Docker); False if there were none."""
        from bottle.engine import remove_container, remove_network

        containers, networks = self._docker_leftovers(slug)
        for container in containers:
            remove_container(self.client.api, container.id)
        for network in networks:
            remove_network(self.client.api, network.id)
        return bool(containers or networks)

    def disk_bound(self, image: str, size: str) -> str:
        return "each microVM's own disk images, whose size smolvm sets (`disk` does not change them)"

    def exec_interactive(self, slug: str, argv, *, user) -> int:
        machines = self._machines(**{LABEL_SLUG: slug})
        if not machines:
            raise EnvironmentProblem(f"No running bottle {slug!r} (see `bottle ls`).", exit_code=2)
        machine = machines[0]
        if machine.state != "running":
            raise EnvironmentProblem(f"Bottle {slug!r} is {machine.state}, not running.")
        if sys.stdin.isatty():
            # CLI: the user's terminal, as `docker exec -it`.
            return self.smolvm.cli_interactive(exec_tty_args(machine.name, argv, user=user))
        from smol import ExecOptions

        try:
            result = interruptible(self.smolvm.connect(machine.name).exec, list(argv), ExecOptions(user=user))
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"exec in bottle {slug} failed: [{err.code}] {err}") from None
        sys.stdout.buffer.write(result.stdout.encode())
        sys.stderr.buffer.write(result.stderr.encode())
        return result.exit_code

    def _guest(self, slug: str):
        """The running machine of *slug*, connected."""
        machines = self._machines(**{LABEL_SLUG: slug})
        if not machines:
            raise EnvironmentProblem(f"No running bottle {slug!r} (see `bottle ls`).", exit_code=2)
        if machines[0].state != "running":
            raise EnvironmentProblem(f"Bottle {slug!r} is {machines[0].state}, not running.", exit_code=2)
        return self.smolvm.connect(machines[0].name)

    def copy_out(self, slug: str, path: str):
        # SDK: one captured exec as the guest user (its default); the stream comes back whole.
        from smol import ExecOptions

        machine = self._guest(slug)
        try:
            result = interruptible(machine.exec, ["sh", "-c", COPY_OUT_SCRIPT, "sh", path], ExecOptions())
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"copying {path} out of bottle {slug} failed: [{err.code}] {err}") from None
        if result.exit_code == 66:
            raise FileNotFoundError(path)
        if result.exit_code != 0 or result.stderr.strip():
            raise EnvironmentProblem(
                f"copying {path} out of bottle {slug} failed (exit {result.exit_code}): {result.stderr.strip()}"
            )
        try:
            return iter([base64.b64decode(result.stdout, validate=True)])
        except ValueError:
            raise EnvironmentProblem(f"copying {path} out of bottle {slug} failed: the stream came back damaged") from None

    def copy_in(self, slug: str, path: str, tar) -> None:
        # SDK: the stream as base64 on the exec's stdin (which takes text), unpacked by the guest
        # user's own tar: everything is the guest user's.
        from smol import ExecOptions

        machine = self._guest(slug)
        data = tar if isinstance(tar, (bytes, bytearray)) else b"".join(tar)
        options = ExecOptions(stdin=base64.b64encode(data).decode())
        try:
            result = interruptible(machine.exec, ["sh", "-c", COPY_IN_SCRIPT, "sh", path], options)
        except _sdk_errors() as err:
            raise EnvironmentProblem(f"copying into {path} of bottle {slug} failed: [{err.code}] {err}") from None
        if result.exit_code == 66:
            raise FileNotFoundError(path)
        if result.exit_code == 67:
            raise NotADirectoryError(path)
        if result.exit_code != 0:
            raise EnvironmentProblem(
                f"copying into {path} of bottle {slug} failed (exit {result.exit_code}): {result.stderr.strip()}"
            )
