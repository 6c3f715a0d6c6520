"""The Docker engine client, for the parts of the core that build images.

Images are built with Docker whatever the backend (smolvm runs the same
image from a ``docker save``), so the core talks to the engine for them.
"""

from bottle.errors import EnvironmentProblem


def docker_client(timeout: int = 120):
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as err:
        raise EnvironmentProblem(
            f"No Docker engine answers ({err}). Start one (as root: `dockerd > /var/log/dockerd.log 2>&1 &`) "
            "or point DOCKER_HOST at one."
        ) from None
    return client
