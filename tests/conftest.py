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
