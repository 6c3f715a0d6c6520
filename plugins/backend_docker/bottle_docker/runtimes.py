"""Which engine runtimes can run a bottle's sandbox here, for ``bottle doctor``: each registered one is tried.

Registered is not the same as working: gVisor's runsc, registered but run in
its default network mode, refuses to start a container on some kernels. Each
runtime runs ``true`` in a container of the agent image, with no network, and
the answer (or the engine's error) is reported.
"""

from docker.errors import APIError, ContainerError, DockerException, ImageNotFound

from bottle.doctor import DoctorSection
from bottle.errors import EnvironmentProblem

PROBE_TIMEOUT = 60


def probe(client, image: str, runtime: str) -> tuple[bool, str]:
    try:
        client.containers.run(image, ["true"], runtime=runtime, network_mode="none", remove=True)
    except ImageNotFound:
        return False, f"not tried: the agent image {image} is not built"
    except (ContainerError, APIError) as err:
        return False, " ".join(str(getattr(err, "explanation", None) or err).split())[:300]
    return True, f"ran a container of {image}"


def runtimes_section(settings) -> DoctorSection:
    from bottle.engine import docker_client

    try:
        client = docker_client(timeout=PROBE_TIMEOUT)
        registered = sorted(client.info().get("Runtimes") or {})
    except (EnvironmentProblem, DockerException) as err:
        return DoctorSection("runtimes", {}, (f"runtime {'':10} not checked: {err}",))
    found = {name: dict(zip(("works", "detail"), probe(client, settings.image, name))) for name in registered}
    lines = tuple(f"runtime {name:10} {'ok ' if result['works'] else 'NO '} {result['detail']}"
                  for name, result in found.items())
    return DoctorSection("runtimes", found, lines)
