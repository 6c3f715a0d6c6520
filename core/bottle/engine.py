"""The Docker engine client, for the parts of the core that build images.

Images are built with Docker whatever the backend (smolvm runs the same
image from a ``docker save``), so the core talks to the engine for them.
"""

import os
from collections.abc import Callable, Mapping

from bottle.errors import EnvironmentProblem


def docker_client(timeout: int = 120):
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as err:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"  # the SDK's default
        raise EnvironmentProblem(
            f"No Docker engine answers at {where} ({err}). Start one (as root: `dockerd > /var/log/dockerd.log 2>&1 &`) "
            "or point DOCKER_HOST at one."
        ) from None
    return client


#: How ``bottle image build`` is told which tag to build, for each kind of image.
BUILD_TAG_FLAG = {"agent": "--tag", "sidecar": "--sidecar-tag"}
#: The image format this bottle builds and runs, by kind: raised when the host
#: side needs what an image built by an older bottle lacks (format 2: the sidecar
#: on Debian 13 and its libraries; format 3: made of the plugins' parts, each
#: service's package under its own name in /opt/bottle/lib, labelled with each
#: part's digest). ``bottle run`` refuses an image of another format (:func:`require_image`).
IMAGE_FORMATS: dict[str, int] = {"sidecar": 3}
FORMAT_LABEL = "bottle.format"


def require_image(client, ref: str, kind: str, lacks: "Callable[[Mapping[str, str]], str | None]" = lambda _: None):
    """The local image *ref*, a bottle's *kind* ("agent" or "sidecar") image.

    Every bottle starts from both, whatever the backend; each is checked here
    before its container (or microVM) is made, so that a missing one, one of
    another format than this bottle runs (see :data:`IMAGE_FORMATS`) or one
    that *lacks* what the run needs (given the labels, it says what) is one
    message, whichever it is, saying how to build exactly that tag.
    """
    from docker.errors import ImageNotFound

    build = (f"Run `bottle image build --only {kind} {BUILD_TAG_FLAG[kind]} {ref}` "
             "(and `bottle image bootstrap` first where no registry is reachable).")
    try:
        image = client.images.get(ref)
    except ImageNotFound:
        raise EnvironmentProblem(f"The {kind} image {ref!r} is not built. {build}") from None
    problem = format_problem(kind, image.labels) or lacks(image.labels)
    if problem:
        raise EnvironmentProblem(f"The {kind} image {ref!r} cannot run with this bottle: {problem}. {build}")
    return image


def remove_container(api, ref: str) -> None:
    """Remove a container, whatever state it is in; already gone (or going) is fine.

    Teardown races with ``bottle stop`` and ``bottle gc`` by design: both ends
    remove the same things, so neither may fail because the other was first.
    """
    from docker.errors import APIError, NotFound

    try:
        api.remove_container(ref, force=True, v=True)
    except NotFound:
        return
    except APIError as err:
        if err.status_code != 409:
            raise
        try:  # "removal already in progress": wait for the other remover
            api.wait(ref, condition="removed", timeout=30)
        except (NotFound, APIError):
            pass


def remove_network(api, ref: str, attempts: int = 25) -> None:
    """Remove a network; retried while a concurrent teardown still detaches endpoints."""
    import time

    from docker.errors import APIError, NotFound

    for attempt in range(attempts):
        try:
            api.remove_network(ref)
            return
        except NotFound:
            return
        except APIError as err:
            if err.status_code != 409 or attempt == attempts - 1:
                raise
            time.sleep(0.2)


def remove_volume(api, name: str) -> None:
    """Remove a volume; already gone is fine (teardown races with ``bottle stop`` and ``gc``)."""
    from docker.errors import NotFound

    try:
        api.remove_volume(name, force=True)
    except NotFound:
        return


def format_problem(kind: str, labels: Mapping[str, str] | None) -> str | None:
    """Why an image of *kind* with *labels* is not one this bottle runs, or None when it is."""
    wanted = IMAGE_FORMATS.get(kind)
    if wanted is None:
        return None
    found = (labels or {}).get(FORMAT_LABEL, "")
    if found == str(wanted):
        return None
    if not found.isdigit() or int(found) < wanted:
        return f"it was built by an older bottle (image format {found or 1}; this bottle runs format {wanted})"
    return f"it was built by a newer bottle (image format {found}; this bottle runs format {wanted})"
