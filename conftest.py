"""The collection rules of every test in the repository: tests/ and each plugin's tests/.

Their reasons and helpers are in ``tests/support/collection.py``; this file,
at the root, makes them apply to the plugins' tests as well as the core's.
"""

from pathlib import Path

import pytest

from tests.support.collection import (
    ENGINE_FIXTURE, HOST_SKIP, IN_CI, IN_SIDECAR_IMAGE, is_integration, sidecar_only,
)


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
