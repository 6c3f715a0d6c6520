"""dev/setup decides what to install from what is actually missing.

The script runs for real (``--packages-only`` stops it after the package
step) on a PATH built for each case: the tools it needs, stand-ins for
``apt-get`` and ``dpkg-query`` that record their arguments, and deliberately
no ``dockerd`` where the case is "a client but no engine". This is about the
script's decisions, not about apt, so apt is the one stand-in.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "dirname", "awk", "tr", "id", "env", "cat", "sed")


def _stand_in(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


#: What a bottle's disks need on the host (bottle_docker.disks): e2fsprogs' and mount's.
DISK_TOOLS = ("mkfs.ext4", "debugfs", "losetup")


@pytest.fixture
def fake_path(tmp_path):
    """A bin dir with the real tools dev/setup needs, an apt-get that records, and python3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    os.symlink(sys.executable, bin_dir / "python3")
    log = tmp_path / "apt.log"
    _stand_in(bin_dir, "apt-get", f'echo "$*" >> {log}')
    _stand_in(bin_dir, "docker", "exit 1")  # a client is on PATH, as on CI's machines
    return bin_dir, log


def _setup(bin_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [str(bin_dir / "bash"), str(ROOT / "dev" / "setup"), "--packages-only"],
        env=env, capture_output=True, text=True, timeout=60,
    )


def _installed(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    installs = [line for line in lines if " install " in f" {line} "]
    return [word for line in installs for word in line.split() if not word.startswith("-") and word != "install"]


def test_a_client_without_an_engine_installs_the_engine(fake_path):
    bin_dir, log = fake_path

    result = _setup(bin_dir)

    assert result.returncode == 0, result.stderr
    assert "docker.io" in _installed(log), log.read_text()


def test_an_engine_on_path_is_not_installed_again(fake_path):
    bin_dir, log = fake_path
    for tool in ("dockerd", "mmdebstrap", "git", "tmux", "runsc", *DISK_TOOLS):
        _stand_in(bin_dir, tool, "exit 0")

    result = _setup(bin_dir)

    assert result.returncode == 0, result.stderr
    assert _installed(log) == []


def test_a_conflicting_client_package_names_the_commands_instead(fake_path):
    bin_dir, log = fake_path
    _stand_in(bin_dir, "dpkg-query", 'echo "docker-ce-cli install ok installed"')

    result = _setup(bin_dir)

    assert result.returncode == 1
    assert "docker-ce-cli" in result.stderr
    assert "apt-get remove docker-ce-cli && apt-get install docker.io" in result.stderr
    assert "apt-get install docker-ce containerd.io" in result.stderr
    assert _installed(log) == []


def test_runsc_is_installed_when_missing(fake_path):
    bin_dir, log = fake_path
    for tool in ("dockerd", "mmdebstrap", "git", "tmux", *DISK_TOOLS):
        _stand_in(bin_dir, tool, "exit 0")

    result = _setup(bin_dir)

    assert result.returncode == 0, result.stderr
    assert _installed(log) == ["runsc"]


def test_the_tools_of_a_bottles_disks_are_installed_when_missing(fake_path):
    bin_dir, log = fake_path
    for tool in ("dockerd", "mmdebstrap", "git", "tmux", "runsc", "mkfs.ext4"):
        _stand_in(bin_dir, tool, "exit 0")

    result = _setup(bin_dir)

    assert result.returncode == 0, result.stderr
    assert _installed(log) == ["e2fsprogs", "mount"], "debugfs and losetup are missing"


def test_runsc_is_registered_with_the_engine_keeping_the_rest(tmp_path):
    import json

    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}')
    register = [sys.executable, str(ROOT / "dev" / "register-runsc"), "/usr/bin/runsc", str(daemon)]

    first, again = subprocess.run(register), subprocess.run(register)

    assert (first.returncode, again.returncode) == (0, 1), "changed once, then already so"
    assert json.loads(daemon.read_text()) == {"log-level": "warn", "runtimes": {
        "other": {"path": "/bin/other"}, "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}}}
    daemon.write_text("[1]")
    assert subprocess.run(register, capture_output=True).returncode == 2
