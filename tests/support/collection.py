"""The collection rules of every test, and the helpers they share (the root ``conftest.py`` applies them).

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
INTEGRATION = Path(__file__).parents[1] / "integration"
#: Every integration fixture that needs the engine depends on this one.
ENGINE_FIXTURE = "engine"
#: How a skip for a reason of the host begins (see :func:`skip_for_host`).
HOST_SKIP = "this host cannot run it:"
#: Unit tests of code that runs only in the sidecar: the egress proxy (mitmproxy),
#: the supervise server (the MCP SDK), the git gate, the init, the secret scanner.
SIDECAR_ONLY = frozenset({
    "test_egress_proxy.py", "test_egress_redaction.py", "test_credential_routes.py", "test_scanner_channels.py",
    "test_supervise_server.py", "test_gitgate.py", "test_sidecar_init.py", "test_secrets_scan.py",
})
#: Unit tests of the sidecar's stdlib-only modules the host imports as well: the
#: egress policy, the audit log, the proposal queue, the deny rules.
SIDECAR_SHARED = frozenset({"test_egress_policy.py", "test_audit.py", "test_proposals.py", "test_deny_rules.py",
                            "test_metering.py", "test_budget_watch.py", "test_heap.py"})
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
    """A test module of the sidecar's, wherever it lives (tests/unit or a plugin's tests/): names are unique."""
    return path.name in SIDECAR_ONLY and path.parent.name in ("unit", "tests")


def sidecar_test_files(repo: Path) -> list[Path]:
    """The test modules that run inside the sidecar image: SIDECAR_ONLY and SIDECAR_SHARED, where they are."""
    names = SIDECAR_ONLY | SIDECAR_SHARED
    found = [path for path in [*repo.glob("tests/unit/test_*.py"), *repo.glob("plugins/**/tests/test_*.py")]
             if path.name in names]
    missing = names - {path.name for path in found}
    assert not missing, f"sidecar test modules not found: {sorted(missing)}"
    return sorted(found)


