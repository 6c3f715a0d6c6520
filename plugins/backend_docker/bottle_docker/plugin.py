"""Entry point ``docker``: registers the Docker backend, and says in ``bottle doctor`` which runtimes work."""

from bottle import hookimpl


@hookimpl
def bottle_register_backends(register):
    from bottle_docker.backend import DockerBackend

    register(DockerBackend())


@hookimpl
def bottle_doctor(settings):
    from bottle_docker.runtimes import runtimes_section  # the Docker SDK: not for `bottle --help`

    return runtimes_section(settings)
