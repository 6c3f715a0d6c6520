"""Entry point ``docker``: registers the Docker backend."""

from bottle import hookimpl


@hookimpl
def bottle_register_backends(register):
    from bottle_docker.backend import DockerBackend

    register(DockerBackend())
