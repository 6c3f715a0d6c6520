"""What pytest collects, and the rules the root ``conftest.py`` puts on it (``tests/support/collection.py``).

``-m "not integration"`` must be the run that needs no engine: every test under
``tests/integration`` carries the marker, a test elsewhere that asks for the
engine is refused at collection, and the benchmarks are never collected.
Under ``CI=true`` an integration test may skip only for a reason of the host.
The sidecar's own tests are collected only inside its image.
"""

import ast
import re
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.collection import SIDECAR_ONLY

REPO = Path(__file__).parents[2]


def pytest_run(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def test_without_integration_nothing_needs_the_engine_and_no_benchmark_is_collected():
    """Run from the repository's root, as CI does: what ``-m "not integration"`` keeps is
    only tests outside tests/integration, and none of it comes from benchmarks/."""
    done = pytest_run(REPO, "--collect-only", "-q", "-m", "not integration", ".")
    assert done.returncode == 0, done.stdout + done.stderr
    selected = [line.split("::")[0] for line in done.stdout.splitlines() if "::" in line]
    assert selected, done.stdout
    assert [path for path in selected if not re.match(r"(tests/unit|plugins/.+/tests)/", path)] == []
    assert " deselected" in done.stdout.splitlines()[-1], "the integration tests must be there, and deselected"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of the real root conftest.py and its helpers with the given test files around it."""
    root = tmp_path / "repo"
    (root / "tests" / "support").mkdir(parents=True)
    shutil.copy(REPO / "conftest.py", root / "conftest.py")
    shutil.copy(REPO / "tests" / "support" / "collection.py", root / "tests" / "support" / "collection.py")
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "support" / "__init__.py").write_text("")
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\nmarkers =\n    integration: needs the engine\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_a_test_outside_integration_that_asks_for_the_engine_is_refused(tmp_path):
    root = _tree(tmp_path, {
        "tests/unit/test_ok.py": "def test_plain():\n    pass\n",
        "tests/unit/test_misplaced.py": "def test_needs_docker(engine):\n    pass\n",
    })
    done = pytest_run(root, "--collect-only", "-q", "tests")
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error: nothing runs
    assert "tests/unit/test_misplaced.py::test_needs_docker" in done.stderr
    assert "test_ok" not in done.stderr


INTEGRATION_TESTS = {
    "tests/integration/test_some.py": """
        import pytest
        from tests.support.collection import skip_for_host

        def test_runs():
            pass

        def test_skips_for_another_reason():
            pytest.skip("the image is old")

        def test_skips_for_the_host():
            skip_for_host("no KVM here")
    """,
    "tests/unit/test_unit.py": """
        import pytest

        def test_skips_anywhere():
            pytest.skip("not on this platform")
    """,
}


def test_every_integration_test_is_marked(tmp_path):
    root = _tree(tmp_path, INTEGRATION_TESTS)
    done = pytest_run(root, "--collect-only", "-q", "-m", "integration", "tests")
    selected = sorted(line for line in done.stdout.splitlines() if "::" in line)
    assert selected == [f"tests/integration/test_some.py::{name}" for name in
                        ("test_runs", "test_skips_for_another_reason", "test_skips_for_the_host")], done.stdout


def test_under_ci_an_integration_test_skips_only_for_the_host(tmp_path):
    root = _tree(tmp_path, INTEGRATION_TESTS)
    env = {**os.environ, "CI": "true"}
    done = pytest_run(root, "-q", "-rfs", "tests", env=env)
    summary = done.stdout
    assert "FAILED tests/integration/test_some.py::test_skips_for_another_reason" in summary, summary
    assert "only a limit of the host may skip: Skipped: the image is old" in summary, summary
    assert "this host cannot run it: no KVM here" in summary
    assert "SKIPPED [1] tests/unit/test_unit.py" in summary, "the rule is for the integration tests only"
    assert summary.splitlines()[-1].startswith("1 failed, 1 passed, 2 skipped"), summary


def test_outside_ci_a_skip_stays_a_skip(tmp_path):
    root = _tree(tmp_path, INTEGRATION_TESTS)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    done = pytest_run(root, "-q", "tests", env=env)
    assert done.returncode == 0 and done.stdout.splitlines()[-1].startswith("1 passed, 3 skipped"), done.stdout


SIDECAR_TESTS = {
    "tests/unit/test_egress_proxy.py": "import mitmproxy_only_in_the_image\n\ndef test_proxy():\n    pass\n",
    "tests/unit/test_audit.py": "def test_shared():\n    pass\n",
    "tests/unit/test_host.py": "def test_host():\n    pass\n",
}


def test_the_sidecar_only_tests_are_left_to_the_image(tmp_path):
    root = _tree(tmp_path, SIDECAR_TESTS)
    env = {key: value for key, value in os.environ.items() if key != "BOTTLE_TEST_IN_SIDECAR_IMAGE"}

    on_host = pytest_run(root, "--collect-only", "-q", "tests", env=env)
    named = pytest_run(root, "--collect-only", "-q", "tests/unit/test_egress_proxy.py", env=env)
    inside = pytest_run(root, "--collect-only", "-q", "tests", env={**env, "BOTTLE_TEST_IN_SIDECAR_IMAGE": "1"})

    assert on_host.returncode == 0, on_host.stdout + on_host.stderr
    assert sorted(line for line in on_host.stdout.splitlines() if "::" in line) == [
        "tests/unit/test_audit.py::test_shared", "tests/unit/test_host.py::test_host"]
    assert named.returncode == 4 and "pytest tests/integration/test_sidecar_image.py" in named.stderr, named.stderr
    assert "No module named 'mitmproxy_only_in_the_image'" in inside.stdout, "inside the image it is collected"


#: The libraries only the sidecar image has (mitmproxy needs a newer Python than the host may have).
SIDECAR_LIBRARIES = {"mitmproxy", "wsproto"}


def test_every_test_that_needs_the_sidecars_libraries_runs_in_its_image():
    """A unit test module importing mitmproxy, or a test module that does, is in SIDECAR_ONLY:
    on the host it would fail to import; left out of the list it would run nowhere."""
    imports = {}
    for path in [*REPO.glob("tests/unit/test_*.py"), *REPO.glob("plugins/**/tests/test_*.py")]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        imports[path.stem] = names
    needs = {name for name, names in imports.items() if {n.split(".")[0] for n in names} & SIDECAR_LIBRARIES}
    while more := {name for name, names in imports.items() if name not in needs
                   and any(n.removeprefix("tests.unit.") in needs for n in names)}:  # or a sibling's name
        needs |= more
    assert sorted(f"{name}.py" for name in needs if f"{name}.py" not in SIDECAR_ONLY) == [], \
        "add these to SIDECAR_ONLY in tests/support/collection.py"
