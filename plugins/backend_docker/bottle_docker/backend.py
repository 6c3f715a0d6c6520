"""The Docker backend, through the Docker SDK for Python.

One bottle = one network (``bottle-SLUG``) + one container (``bottle-SLUG``),
both labelled ``bottle.slug`` so that ``bottle ls``/``gc`` find them from any
process. The container's main process is an idle ``sleep`` under Docker's
init; the agent runs as an exec as the non-root guest user, so that its exit
code is ours and provisioning can happen before it starts.

Limits (``plan.resources``, see ``bottle.limits``): CPUs, memory (swap
included, so none beyond it) and pids are the container's. The agent's home
and workdir are durable volumes (``bottle-SLUG-home``, ``bottle-SLUG-workdir``,
labelled like the rest), each an ext4 disk of ``disk`` bytes where loop devices
can be had (``bottle_docker.disks``), plain volumes otherwise: the run ends by
removing the containers and the network, and the volumes stay for
``bottle resume`` until ``bottle rm``. Elsewhere disk is bounded by a quota on
the container's writable layer where the engine's storage has one
(:func:`storage_quota`); where it has none, the other paths the agent user can
write (/tmp, /var/tmp, /run/lock) are each a tmpfs of bounded size instead,
whose files count against the memory limit too.
"""

import contextlib
import secrets
import shutil
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import docker
from docker.errors import APIError, DockerException, NotFound

from bottle.backend import (
    LABEL_BACKEND,
    LABEL_SLUG,
    Availability,
    Backend,
    Bottle,
    BottleInfo,
    Channel,
    ExecResult,
)
from bottle.engine import docker_client, remove_container, remove_network, remove_volume, require_image
from bottle.errors import EnvironmentProblem
from bottle.limits import size_bytes
from bottle.plan import Plan, PlanFile, Resources
from bottle.sidecar.host import StartedSidecar
from bottle.sidecar.runtime import LABEL_ROLE, DockerSidecarHost, sidecar_name
from bottle_docker import disks
from bottle.safe_tar import owned_by
from bottle.tarball import pack


def resource_name(slug: str) -> str:
    return f"bottle-{slug}"


#: What each durable volume's labels say of it, besides the plan's: where the sandbox mounts it, the image
#: and the guest uid of the bottle, and its disk file ("" for a plain volume). ``bottle cp`` reads them to
#: copy out of a stopped bottle, or into one, without its plan.
LABEL_MOUNT = "bottle.mount"
LABEL_IMAGE = "bottle.image"
LABEL_UID = "bottle.uid"
LABEL_DISK = "bottle.disk"


#: Storage drivers that can hold a container's writable layer to a size (overlay2
#: only over xfs mounted with project quotas); Docker says whether it can only
#: when a container asks.
QUOTA_DRIVERS = ("overlay2", "btrfs", "zfs", "devicemapper")
#: Where the agent user can write in the agent image besides its home and the
#: workdir: with no quota, each is a tmpfs (exec allowed, as on disk).
TMPFS_PATHS = ("/tmp", "/var/tmp", "/run/lock")


def storage_quota(client, image: str, size: str) -> tuple[bool, str]:
    """Whether the engine can hold a container of *image* to *size* on disk (``storage_opt``), and why (not).

    A storage that cannot is named from ``docker info``; one that may is asked
    with a container that is created, never started, and removed.
    """
    info = client.info()
    driver = info.get("Driver", "?")
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "")
    storage = f"{driver} over {backing}" if backing else driver
    if driver not in QUOTA_DRIVERS or (driver == "overlay2" and backing != "xfs"):
        return False, f"{storage} has no disk quota per container"
    api = client.api
    try:
        probe = api.create_container(
            image, command=["true"], name=f"bottle-quota-probe-{secrets.token_hex(3)}",
            host_config=api.create_host_config(storage_opt={"size": str(size_bytes(size))}),
        )
    except NotFound:
        return False, f"{storage} may have a disk quota per container; the image {image} to try it with is not built"
    except APIError as err:
        return False, f"{storage} refuses a disk quota per container: {err.explanation or err}"
    remove_container(api, probe["Id"])
    return True, f"{storage} holds each container's writable layer to its quota"


def tmpfs_size(limits: Resources) -> int:
    """Bytes each of the agent's tmpfs may hold where there is no quota: ``disk``, and at most half
    of ``memory``, which their files count against: one full tmpfs leaves the agent's processes room."""
    size = size_bytes(limits.disk)
    return min(size, size_bytes(limits.memory) // 2) if limits.memory else size


def volume_names(plan: Plan) -> dict[str, tuple[str, str]]:
    """The bottle's durable volumes: name -> (the guest path it holds, its disk's name in the state dir)."""
    name = resource_name(plan.slug)
    return {f"{name}-home": (plan.guest.home, "home"), f"{name}-workdir": (plan.guest.workdir, "workdir")}


class DockerBottle(Bottle):
    def __init__(self, client: docker.DockerClient, container, plan: Plan):
        self.client = client
        self.container = container
        self.plan = plan
        self.slug = plan.slug

    def exec(self, argv, *, user=None, env=None, workdir=None) -> ExecResult:
        result = self.container.exec_run(
            list(argv),
            user=user or self.plan.guest.user,
            environment=dict(env or {}),
            workdir=workdir,
            demux=True,
        )
        stdout, stderr = result.output
        return ExecResult(result.exit_code, stdout or b"", stderr or b"")

    def put_files(self, files: Sequence[PlanFile], *, uid: int, gid: int) -> None:
        archive = pack(files, uid=uid, gid=gid, owned_below=self.plan.guest.home)
        self.container.put_archive("/", archive)

    def run_agent(self, argv, *, env, interactive) -> int:
        if interactive:
            return run_docker_cli_exec(self.container.name, argv, user=self.plan.guest.user)
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id,
            list(argv),
            user=self.plan.guest.user,
            environment=dict(env),
            workdir=self.plan.guest.workdir,
            tty=False,
            stdin=False,
        )["Id"]
        for out, err in api.exec_start(exec_id, stream=True, demux=True):
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.buffer.flush()
        return api.exec_inspect(exec_id)["ExitCode"]


class ExecChannel(Channel):
    """A connection carried by an exec's attached socket: stdin raw, stdout and stderr in the engine's frames
    (8 bytes: the stream, 3 zeros, the length big-endian; then the bytes)."""

    def __init__(self, attached):
        self.sock = getattr(attached, "_sock", attached)
        self.error = ""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    def recv(self) -> bytes:
        while header := self._exactly(8):
            data = self._exactly(struct.unpack(">I", header[4:])[0])
            if header[0] == 1:
                return data
            self.error = (self.error + data.decode(errors="replace")).strip()[-500:]  # the relay's one line
        return b""

    def close(self) -> None:
        self.sock.close()


def _streamed(stream, held: contextlib.ExitStack):
    """*stream*'s chunks; *held* (the container they come from) is let go once they are read, or dropped."""
    with held:
        yield from stream


def run_docker_cli_exec(container: str, argv: Sequence[str], *, user: str | None) -> int:
    """Interactive sessions go through ``docker exec -it``: it owns the TTY dance."""
    cli = shutil.which("docker")
    if cli is None:
        raise EnvironmentProblem("Interactive sessions need the `docker` command-line client on PATH.")
    if not sys.stdin.isatty():
        raise EnvironmentProblem(
            "An interactive session needs a terminal on stdin; use --prompt TEXT for a headless run.", exit_code=2
        )
    command = [cli, "exec", "-it"]
    if user:
        command += ["-u", user]
    return subprocess.call([*command, container, *argv])


class DockerBackend(Backend):
    name = "docker"

    def __init__(self):
        self._client: docker.DockerClient | None = None
        self._quota: dict[tuple[str, str], tuple[bool, str]] = {}

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client(timeout=60)
        return self._client

    def availability(self) -> Availability:
        try:
            version = self.client.version()
        except (EnvironmentProblem, DockerException) as err:
            return Availability(False, str(err))
        return Availability(True, f"Docker Engine {version.get('Version', '?')}")

    def sidecar_host(self) -> DockerSidecarHost:
        return DockerSidecarHost(self.client)

    def open_network(self, plan: Plan, stack: contextlib.ExitStack) -> str:
        client = self.client
        name = resource_name(plan.slug)
        require_image(client, plan.image, "agent")  # before anything starts: a missing image is one message
        self.runtime(plan)  # and so is a runtime this engine lacks
        # Registered before creation: an interrupt between "created" and
        # "registered" must not leak it. Removing a missing one is a no-op.
        stack.callback(self._remove_network, name)
        # No route out: internal, and the host has no address on it (without
        # inhibit_ipv4 the host's own services answer on the gateway address).
        client.networks.create(
            name,
            driver="bridge",
            internal=True,
            options={"com.docker.network.bridge.inhibit_ipv4": "true"},
            labels=dict(plan.labels),
        )
        return name

    def open(self, plan: Plan, stack: contextlib.ExitStack, network: str, sidecar: StartedSidecar) -> Bottle:
        name = resource_name(plan.slug)
        # The sandbox and the sidecar (which started already, and whose daemons
        # take longest) are removed together, by name, whatever got created; the
        # volumes stay, with the agent's work in them.
        stack.callback(self._remove_containers, [name, sidecar_name(plan.slug)])
        container = self._start_sandbox(plan, name, network)
        return DockerBottle(self.client, container, plan)

    def storage_quota(self, image: str, size: str) -> tuple[bool, str]:
        """:func:`storage_quota`, asked once per image and size."""
        if (image, size) not in self._quota:
            self._quota[image, size] = storage_quota(self.client, image, size)
        return self._quota[image, size]

    def disk_bound(self, image: str, size: str) -> str:
        loops = disks.loops_unavailable()
        volumes = ("the agent's home and workdir are each an ext4 disk of `disk`" if loops is None else
                   f"the agent's home and workdir are NOT bounded ({loops}): they are plain volumes")
        quota, why = self.storage_quota(image, size)
        if quota:
            return f"{volumes}; a quota of `disk` on each bottle's writable layer ({why})"
        return (f"{volumes}; no quota on the rest ({why}): {', '.join(TMPFS_PATHS)} are each a tmpfs of `disk`, "
                "at most half of `memory`, and count against `memory`")

    def _disk(self, plan: Plan) -> dict:
        """The container's arguments that hold its files: the durable volumes, made or found (see
        ``bottle_docker.disks``), and what bounds the rest (see the module's docstring)."""
        limits = plan.resources
        loops = limits.disk is not None and disks.loops_unavailable() is None
        binds = {}
        for volume, (path, disk) in volume_names(plan).items():
            device = None
            if loops:
                file = disks.Disk(plan.state_dir / disks.DISKS_DIR / f"{disk}.ext4", size_bytes(limits.disk),
                                  plan.guest.uid)
                file.create()
                device = disks.attach(file.path)
            self._volume(volume, device, {**plan.labels, LABEL_MOUNT: path, LABEL_IMAGE: plan.image,
                                          LABEL_UID: str(plan.guest.uid), LABEL_DISK: str(file.path) if device else ""})
            binds[volume] = {"bind": path, "mode": "rw"}
        if limits.disk is None:
            return {"volumes": binds}
        if self.storage_quota(plan.image, limits.disk)[0]:
            return {"volumes": binds, "storage_opt": {"size": str(size_bytes(limits.disk))}}
        size = tmpfs_size(limits)
        tmpfs = {path: f"rw,exec,nosuid,nodev,size={size},mode=1777" for path in TMPFS_PATHS}
        return {"volumes": binds, "tmpfs": tmpfs}

    def _volume(self, name: str, device: str | None, labels) -> None:
        """The named volume *name*, mounting *device* (a loop device; None: a plain volume), made or mended."""
        options = {"type": "ext4", "device": device, "o": disks.MOUNT_OPTIONS} if device else {}
        try:
            found = self.client.volumes.get(name)
        except NotFound:
            found = None
        if found is not None:
            if (found.attrs.get("Options") or {}) == options:
                return
            remove_volume(self.client.api, name)  # a loop number of an earlier boot: the disk is the file
        self.client.volumes.create(name, driver="local", labels=dict(labels), driver_opts=options)

    def runtimes(self) -> list[str]:
        """The runtimes this engine has registered (``docker info``): runc always, runsc once registered."""
        return sorted(self.client.info().get("Runtimes") or {"runc": {}})

    def runtime(self, plan: Plan) -> str | None:
        """The engine runtime for *plan*'s sandbox (None: the engine's default, runc), checked against this engine.

        ``auto`` takes gVisor where it is registered. The sidecar always runs
        under the default runtime: it is bottle's, not the agent's.
        """
        if plan.runtime in (None, "runc"):
            return None
        registered = self.runtimes()
        if "runsc" in registered:
            return "runsc"
        if plan.runtime == "auto":
            return None
        raise EnvironmentProblem(
            f"Profile {plan.profile!r}: field `runtime`: runsc (gVisor) is not registered with this Docker engine "
            f"(it has {', '.join(registered)}). Install it and register it (`dev/setup` does both), or set "
            'runtime = "auto" to use it only where it is.'
        )

    def _start_sandbox(self, plan: Plan, name: str, network: str):
        limits = plan.resources
        container = self.client.containers.create(
            plan.image,
            runtime=self.runtime(plan),
            command=["sleep", "infinity"],
            name=name,
            hostname=plan.slug[:63],
            labels=dict(plan.labels),
            environment=dict(plan.env),
            user=plan.guest.user,
            working_dir=plan.guest.workdir,
            init=True,
            network=network,
            nano_cpus=int(limits.cpus * 1e9) if limits.cpus else None,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            pids_limit=limits.pids,
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            **self._disk(plan),
        )
        try:
            container.start()
        except APIError as err:
            raise EnvironmentProblem(f"The bottle's container did not start: {err.explanation or err}") from None
        return container

    def _remove_containers(self, names: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(self._remove_container, names))

    def _remove_container(self, name: str) -> None:
        remove_container(self.client.api, name)

    def _remove_network(self, name: str) -> None:
        remove_network(self.client.api, name)

    def _info(self, labels: dict, status: str, created: str) -> BottleInfo:
        return BottleInfo.from_labels(labels, self.name, status, created)

    def list(self) -> list[BottleInfo]:
        found: dict[str, BottleInfo] = {}
        mine = [LABEL_SLUG, f"{LABEL_BACKEND}={self.name}"]  # another backend's sidecar is its own business
        containers = self.client.containers.list(all=True, filters={"label": mine})
        # Agents first: a bottle's status is its agent's; a lone sidecar or
        # network is what a crashed run left.
        for container in sorted(containers, key=lambda c: c.labels.get(LABEL_ROLE) == "sidecar"):
            slug = container.labels[LABEL_SLUG]
            if slug not in found:
                lone = container.labels.get(LABEL_ROLE) == "sidecar"
                status = f"sidecar {container.status}" if lone else container.status
                found[slug] = self._info(container.labels, status, container.attrs.get("Created", ""))
        for network in self.client.networks.list(filters={"label": mine}):
            labels = network.attrs["Labels"]
            if labels[LABEL_SLUG] not in found:
                found[labels[LABEL_SLUG]] = self._info(labels, "network only", network.attrs.get("Created", ""))
        for volume in self.client.volumes.list(filters={"label": mine}):
            labels = volume.attrs["Labels"]
            if labels[LABEL_SLUG] not in found:
                found[labels[LABEL_SLUG]] = self._info(labels, "stopped", volume.attrs.get("CreatedAt", ""))
        return list(found.values())

    def _labelled(self, slug: str):
        labels = [f"{LABEL_SLUG}={slug}", f"{LABEL_BACKEND}={self.name}"]
        return (self.client.containers.list(all=True, filters={"label": labels}),
                self.client.networks.list(filters={"label": labels}),
                self.client.volumes.list(filters={"label": labels}))

    def stop(self, slug: str) -> bool:
        containers, networks, _ = self._labelled(slug)
        if containers:
            self._remove_containers([container.id for container in containers])
        for network in networks:
            remove_network(self.client.api, network.id)
        return bool(containers or networks)

    def remove(self, slug: str) -> bool:
        stopped = self.stop(slug)
        _, _, volumes = self._labelled(slug)
        for volume in volumes:  # once no container uses them
            device = (volume.attrs.get("Options") or {}).get("device", "")
            remove_volume(self.client.api, volume.name)
            if device.startswith("/dev/loop"):
                disks.detach(device, slug)
        return bool(stopped or volumes)

    def exec_interactive(self, slug: str, argv, *, user) -> int:
        name = resource_name(slug)
        try:
            container = self.client.containers.get(name)
        except NotFound:
            raise EnvironmentProblem(f"No running bottle {slug!r} (see `bottle ls`).", exit_code=2) from None
        if container.status != "running":
            raise EnvironmentProblem(f"Bottle {slug!r} is {container.status}, not running.")
        if sys.stdin.isatty():
            return run_docker_cli_exec(name, argv, user=user)
        result = container.exec_run(list(argv), user=user or "", demux=True)
        stdout, stderr = result.output
        sys.stdout.buffer.write(stdout or b"")
        sys.stderr.buffer.write(stderr or b"")
        return result.exit_code

    def _running(self, slug: str, name: str | None = None):
        try:
            container = self.client.containers.get(name or resource_name(slug))
        except NotFound:
            raise EnvironmentProblem(f"No running bottle {slug!r} (see `bottle ls`).", exit_code=2) from None
        if container.status != "running":
            raise EnvironmentProblem(f"Bottle {slug!r} is {container.status}, not running.", exit_code=2)
        return container

    def connect(self, slug: str, port: int) -> ExecChannel:
        # The sidecar relays it: it is on the sandbox's internal network, the host is not (see bottle.ports).
        sidecar = self._running(slug, sidecar_name(slug))
        api = self.client.api
        exec_id = api.exec_create(sidecar.id, ["python", "-m", "bottle_sidecar.relay", resource_name(slug), str(port)],
                                  stdin=True, stdout=True, stderr=True, tty=False)["Id"]
        return ExecChannel(api.exec_start(exec_id, socket=True))

    @contextlib.contextmanager
    def _files_of(self, slug: str):
        """The container whose files ``bottle cp`` reads and writes, with the guest user's uid: the running
        sandbox, or for a stopped bottle one made for the copy (never started, no network) that mounts its
        volumes where the sandbox does (their disks attached, as a start would)."""
        try:
            container = self.client.containers.get(resource_name(slug))
        except NotFound:
            container = None
        if container is not None:
            if container.status != "running":
                raise EnvironmentProblem(f"Bottle {slug!r} is {container.status}: `bottle gc` stops what its killed "
                                         "run left, and then its files can be copied.", exit_code=2)
            ids = container.exec_run(["id", "-u"], demux=True)
            uid = (ids.output[0] or b"").strip()
            if not uid.isdigit():
                raise EnvironmentProblem(f"bottle {slug}: the guest user's id is unknown (`id` exited {ids.exit_code})")
            yield container, int(uid)
            return
        volumes = [volume for volume in self._labelled(slug)[2] if LABEL_MOUNT in (volume.attrs["Labels"] or {})]
        if not volumes:
            raise EnvironmentProblem(f"Bottle {slug!r} has no volumes to copy from or into.", exit_code=2)
        binds = {}
        for volume in volumes:
            labels = volume.attrs["Labels"]
            disk = labels.get(LABEL_DISK)
            device = disks.attach(Path(disk)) if disk else None
            self._volume(volume.name, device, labels)
            binds[volume.name] = {"bind": labels[LABEL_MOUNT], "mode": "rw"}
        labels = volumes[0].attrs["Labels"]
        helper = self.client.containers.create(
            labels[LABEL_IMAGE], command=["true"], volumes=binds, network_disabled=True,
            labels={LABEL_SLUG: slug, LABEL_BACKEND: self.name, LABEL_ROLE: "copy"})
        try:
            yield helper, int(labels[LABEL_UID])
        finally:
            remove_container(self.client.api, helper.id)

    def copy_out(self, slug: str, path: str):
        # The engine reads the container's filesystem (as `docker cp` does), links as links.
        held = contextlib.ExitStack()
        container, _ = held.enter_context(self._files_of(slug))
        try:
            stream, _ = container.get_archive(path)
        except NotFound:
            held.close()
            raise FileNotFoundError(path) from None
        except APIError as err:
            held.close()
            raise EnvironmentProblem(f"copying {path} out of bottle {slug} failed: {err.explanation or err}") from None
        return _streamed(stream, held)

    def copy_in(self, slug: str, path: str, tar) -> None:
        # The engine extracts as root with the headers' owners: the guest user's.
        with self._files_of(slug) as (container, uid), owned_by(tar, uid=uid, gid=uid) as archive:
            try:
                container.put_archive(path, archive)
            except NotFound:
                raise FileNotFoundError(path) from None
            except APIError as err:
                if "not a directory" in str(err.explanation or err).lower():
                    raise NotADirectoryError(path) from None
                raise EnvironmentProblem(f"copying into {path} of bottle {slug} failed: {err.explanation or err}") from None
