"""Which backends the integration tests may run a bottle on, and the one allowed skip.

docker runs wherever the engine answers (its absence fails under CI=true, see
``tests.conftest.require``). smolvm runs wherever its availability probe says a
microVM boots here. Where it cannot for a reason of the host (no KVM, no
hardware virtualization, no permission on /dev/kvm: the probe's
``host_limit``), its tests skip with the probe's own reason, also under
CI=true: a machine whose KVM cannot boot a guest is not a broken setup, and
that skip is the only one ``.ci/run`` accepts (``tests.conftest.skip_for_host``).
Any other "no" -- smolvm failing on bottle's call, a boot that hangs, a
missing engine -- fails the test. A backend that is not installed at all is a
broken setup, and fails under CI.

Use :func:`use_backend` in a test module (``home = use_backend("smolvm")``)
to run that module's tests, including ones imported from the docker suites,
on another backend.
"""

import functools

import pytest

from tests.support.collection import require, skip_for_host


@functools.cache
def availability(name: str):
    """The backend's own answer, asked once per session (its probe's cache is the session's, see conftest)."""
    from bottle.plugins import load_plugins

    backend = load_plugins().backends.get(name)
    return None if backend is None else backend.availability()


def require_backend(name: str) -> None:
    """Skip (even under CI) with the backend's own reason when this host cannot run it; fail otherwise."""
    result = availability(name)
    require(result is not None, f"backend {name!r} is not installed (pip install -e plugins/backend_{name})")
    if result.ok:
        return
    if result.host_limit:
        skip_for_host(f"backend {name}: {result.reason}")
    pytest.fail(f"backend {name} cannot run, and not for a reason of this host: {result.reason}")


def use_backend(name: str):
    """A ``home`` fixture whose bottles run on *name* (``BOTTLE_BACKEND``), after the backend check."""

    @pytest.fixture
    def home(home):
        require_backend(name)
        home.env["BOTTLE_BACKEND"] = name
        return home

    return home
