"""The Docker backend, through the Docker SDK for Python.

One bottle = one network (``bottle-SLUG``) + one container (``bottle-SLUG``),
both labelled ``bottle.slug`` so that ``bottle ls``/``gc`` find them from any
process. The container's main process is an idle ``sleep`` under Docker's
init; the agent runs as an exec as the non-root guest user, so that its exit
code is ours and provisioning can happen before it starts.
"""

import contextlib
import shutil
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
from typing import Sequence

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from bottle.backend import (
    LABEL_BACKEND,
    LABEL_SLUG,
    Availability,
    Backend,
    Bottle,
    BottleInfo,
    ExecResult,
)
from bottle.engine import docker_client, remove_container, remove_network
from bottle.errors import EnvironmentProblem
from bottle.plan import Plan, PlanFile
from bottle.sidecar_runtime import LABEL_ROLE, Sidecar, sidecar_name, start_sidecar
from bottle.tarball import pack


def resource_name(slug: str) -> str:
    return f"bottle-{slug}"


class DockerBottle(Bottle):
    def __init__(self, client: docker.DockerClient, container, plan: Plan, sidecar: Sidecar):
        self.client = client
        self.container = container
        self.plan = plan
        self.slug = plan.slug
        self.sidecar = sidecar

    def wait_ready(self) -> None:
        self.sidecar.wait_ready()

    def failure(self) -> str | None:
        return self.sidecar.failure()

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

    def open(self, plan: Plan, stack: contextlib.ExitStack) -> Bottle:
        client = self.client
        name = resource_name(plan.slug)
        try:
            client.images.get(plan.image)
        except ImageNotFound:
            raise EnvironmentProblem(
                f"Image {plan.image!r} is not built. Run `bottle image build` (and `bottle image bootstrap` "
                "first where no registry is reachable)."
            ) from None
        # Registered before creation: an interrupt between "created" and
        # "registered" must not leak it. Removing a missing one is a no-op.
        stack.callback(self._remove_network, name)
        # No route out: internal, and the host has no address on it (without
        # inhibit_ipv4 the host's own services answer on the gateway address).
        network = client.networks.create(
            name,
            driver="bridge",
            internal=True,
            options={"com.docker.network.bridge.inhibit_ipv4": "true"},
            labels=dict(plan.labels),
        )
        # Sidecar and sandbox start side by side (the sidecar's daemons take
        # longest); both are removed together, by name, whatever got created.
        stack.callback(self._remove_containers, [name, sidecar_name(plan.slug)])
        with ThreadPoolExecutor(max_workers=1) as pool:
            starting = pool.submit(start_sidecar, client, plan, network.name, stack)
            try:
                container = self._start_sandbox(plan, name, network.name)
            finally:
                sidecar = starting.result()  # never leave it starting behind our back
        return DockerBottle(client, container, plan, sidecar)

    def _start_sandbox(self, plan: Plan, name: str, network: str):
        limits = plan.resources
        container = self.client.containers.create(
            plan.image,
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
            pids_limit=limits.pids,
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
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
        return list(found.values())

    def remove(self, slug: str) -> bool:
        labels = [f"{LABEL_SLUG}={slug}", f"{LABEL_BACKEND}={self.name}"]
        containers = self.client.containers.list(all=True, filters={"label": labels})
        networks = self.client.networks.list(filters={"label": labels})
        for container in containers:
            remove_container(self.client.api, container.id)
        for network in networks:
            remove_network(self.client.api, network.id)
        return bool(containers or networks)

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
