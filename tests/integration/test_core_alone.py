"""The core installed alone (``pip install .``, no plugin distribution) is a bottle that says what it lacks,
and each plugin distribution installs onto it and loads.

The core alone lists its own commands and plugins, checks the machine, and
refuses to run a bottle, naming what is missing: with no backend and no
capability there is nothing it could run safely. Each distribution under
plugins/ then installs against the core alone (and the distributions it
declares) and its plugins load, every hook accepted (``check_pending``).
Installed into a fresh virtual environment, as a user would; it needs no
engine, but it installs from the package index, so it runs with the
integration tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib

import pytest

REPO = Path(__file__).parents[2]
DISTRIBUTIONS = {tomllib.loads(path.read_text())["project"]["name"]: path.parent
                 for path in sorted(REPO.glob("plugins/**/pyproject.toml"))}


@pytest.fixture(scope="module")
def core_alone(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core-alone") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "bottle"


def pip(bottle: Path, *args: str) -> None:
    done = subprocess.run([str(bottle.with_name("pip")), "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


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


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_each_plugin_distribution_installs_onto_the_core_alone_and_loads(core_alone, tmp_path, distribution):
    project = DISTRIBUTIONS[distribution]
    needs = [name for name in (tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"])
             if name.split(">")[0].split("=")[0] in DISTRIBUTIONS]
    paths = [str(DISTRIBUTIONS[name.split(">")[0].split("=")[0]]) for name in needs] + [str(project)]
    pip(core_alone, "install", *paths)
    try:
        listed = run(core_alone, tmp_path, "plugins", "--json")
        assert listed.returncode == 0, listed.stderr
        report = json.loads(listed.stdout)
        assert report["failed"] == {}, report["failed"]
        assert distribution in [d["name"] for d in report["distributions"]]
    finally:
        pip(core_alone, "uninstall", "-y", distribution, *[name.split(">")[0] for name in needs])
