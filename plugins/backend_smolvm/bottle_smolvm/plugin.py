"""Entry point ``smolvm``: registers the smolvm backend."""

from bottle import hookimpl


@hookimpl
def bottle_register_backends(register):
    from bottle_smolvm.backend import SmolvmBackend

    register(SmolvmBackend())
