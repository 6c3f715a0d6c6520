"""Fixtures and collection rules shared by the unit, integration and end-to-end tests.

Integration tests need a real Docker engine and the images built by
``bottle image bootstrap`` / ``bottle image build``. Without them a test skips
on a developer's machine, but under ``CI=true`` it fails: a skipped test is
not a passed test. The one skip CI accepts is a backend that cannot run on
this host for a reason of the host (:func:`skip_for_host`), such as smolvm on
a machine whose KVM cannot boot a guest.

Every test under ``tests/integration`` carries the ``integration`` marker
(``-m "not integration"`` runs what needs no engine), and a test elsewhere
that asks for the engine is refused at collection.

The tests of what runs only in the sidecar (:data:`SIDECAR_ONLY`) are not
collected on the host: they run inside the sidecar image, on the Python and
libraries the sidecar has (Debian 13's Python, mitmproxy 12, the MCP SDK 2),
which a host on another Python may not be able to install.
``tests/integration/test_sidecar_image.py`` runs them there, with the tests of
the sidecar's stdlib-only modules that the host imports too
(:data:`SIDECAR_SHARED`), which run in both places.
"""

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
INTEGRATION = Path(__file__).parent / "integration"
#: Every integration fixture that needs the engine depends on this one.
ENGINE_FIXTURE = "engine"
#: How a skip for a reason of the host begins (see :func:`skip_for_host`).
HOST_SKIP = "this host cannot run it:"
UNIT = Path(__file__).parent / "unit"
#: Unit tests of code that runs only in the sidecar: the egress proxy (mitmproxy),
#: the supervise server (the MCP SDK), the git gate, the init, the secret scanner.
SIDECAR_ONLY = frozenset({
    "test_egress_proxy.py", "test_egress_redaction.py", "test_credential_routes.py", "test_scanner_channels.py",
    "test_supervise_server.py", "test_gitgate.py", "test_sidecar_init.py", "test_secrets_scan.py",
})
#: Unit tests of the sidecar's stdlib-only modules the host imports as well: the
#: egress policy, the audit log, the proposal queue, the deny rules.
SIDECAR_SHARED = frozenset({"test_egress_policy.py", "test_audit.py", "test_proposals.py", "test_deny_rules.py"})
#: Set by tests/integration/test_sidecar_image.py in the container it runs them in.
IN_SIDECAR_IMAGE = os.environ.get("BOTTLE_TEST_IN_SIDECAR_IMAGE") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when something an integration test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing engine or image is a failure, not a skip)")
    pytest.skip(reason)


def skip_for_host(reason: str) -> None:
    """Skip, even under CI=true, because this machine cannot do what the test needs
    (no KVM, no hardware virtualization, no permission): not a broken setup."""
    pytest.skip(f"{HOST_SKIP} {reason}")


def is_integration(item: pytest.Item) -> bool:
    return INTEGRATION in Path(item.path).parents


def sidecar_only(path: Path) -> bool:
    return path.parent == UNIT and path.name in SIDECAR_ONLY


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """On the host, the sidecar's own tests are left to the run inside its image."""
    return True if not IN_SIDECAR_IMAGE and sidecar_only(collection_path) else None


def pytest_configure(config: pytest.Config) -> None:
    """A sidecar test named on the host's command line is refused, saying where it runs
    (pytest collects what it is given even when told to ignore it)."""
    named = [arg.split("::")[0] for arg in config.args]
    here = sorted({path for path in named if not IN_SIDECAR_IMAGE and sidecar_only(Path(path).resolve())})
    if here:
        raise pytest.UsageError(
            f"{', '.join(here)}: the sidecar's own tests run inside its image, on its Python and libraries, "
            "not on the host; run `pytest tests/integration/test_sidecar_image.py` (it needs the Docker engine "
            "and the image)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = []
    for item in items:
        if is_integration(item):
            item.add_marker(pytest.mark.integration)
        elif ENGINE_FIXTURE in getattr(item, "fixturenames", ()) or item.get_closest_marker("integration"):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "tests outside tests/integration that need the engine (move them there, where the engine's "
            "fixtures and the leftover checks are): " + ", ".join(misplaced)
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI=true an integration test that skips fails, unless it skipped for the host."""
    report = yield
    if IN_CI and report.skipped and is_integration(item) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not reason.removeprefix("Skipped: ").startswith(HOST_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI=true, where only a limit of the host may skip: {reason}"
    return report
