"""The core installed alone (``pip install .``, no plugin distribution) is a bottle that says what it lacks.

It lists its own commands and plugins, checks the machine, and refuses to
run a bottle, naming what is missing: with no backend and no capability
there is nothing it could run safely. Installed into a fresh virtual
environment, as a user would; it needs no engine, but it installs from the
package index, so it runs with the integration tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def core_alone(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core-alone") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "bottle"


def run(bottle: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_STATE_HOME": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.run([str(bottle), *args], capture_output=True, text=True, timeout=60, env=env, cwd=home)


def test_the_core_alone_lists_only_itself_and_refuses_to_run(core_alone, tmp_path):
    helped = run(core_alone, tmp_path, "--help")
    assert helped.returncode == 0 and "run" in helped.stdout and "egress" not in helped.stdout, helped.stdout

    listed = run(core_alone, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert [plugin["name"] for plugin in report["plugins"]] == ["core"]
    assert [d["name"] for d in report["distributions"]] == ["bottle"] and report["failed"] == {}

    checked = run(core_alone, tmp_path, "doctor")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert "No backend can run here (none is installed)" in checked.stderr

    (tmp_path / "config" / "bottle" / "bottles").mkdir(parents=True)
    (tmp_path / "config" / "bottle" / "bottles" / "default.toml").write_text("")
    (tmp_path / ".bottle" / "agents").mkdir(parents=True)
    (tmp_path / ".bottle" / "agents" / "hello.md").write_text("---\nname: hello\n---\nSay hello.\n")
    refused = run(core_alone, tmp_path, "run", "hello", "--dry-run")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "Unknown backend 'docker'" in refused.stderr and "Installed: none" in refused.stderr
