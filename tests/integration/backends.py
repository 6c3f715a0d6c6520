"""Which backends the integration tests may run a bottle on, and the one allowed skip.

docker runs wherever the engine answers (its absence fails under CI=true, see
``tests.conftest.require``). smolvm runs wherever its availability probe says a
microVM boots here; elsewhere its tests skip with the probe's own reason, also
under CI=true: a machine whose KVM cannot boot a guest is not a broken setup,
and that skip is the only one ``.ci/run`` accepts. A backend that is not
installed at all is a broken setup, and fails under CI.

Use :func:`use_backend` in a test module (``home = use_backend("smolvm")``)
to run that module's tests, including ones imported from the docker suites,
on another backend.
"""

import functools

import pytest

from tests.conftest import require

SKIP_PREFIX = "cannot boot here:"


@functools.cache
def availability(name: str):
    from bottle.plugins import load_plugins

    return load_plugins().backends().get(name), name


def require_backend(name: str) -> None:
    """Skip (even under CI) with the backend's own reason when it cannot run here."""
    backend, _ = availability(name)
    require(backend is not None, f"backend {name!r} is not installed (pip install -e plugins/backend_{name})")
    result = backend.availability()
    if not result.ok:
        pytest.skip(f"backend {name} {SKIP_PREFIX} {result.reason}")


def use_backend(name: str):
    """A ``home`` fixture whose bottles run on *name* (``BOTTLE_BACKEND``), after the backend check."""

    @pytest.fixture
    def home(home):
        require_backend(name)
        home.env["BOTTLE_BACKEND"] = name
        return home

    return home
