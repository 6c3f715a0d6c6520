"""The sidecar's init, run as a process on the host with small stand-in services.

When the tests run as root the services run as ``nobody`` (in the image the
init itself runs as the unprivileged ``sidecar`` user, which a host need not have).
"""

import ast
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bottle_sidecar import init

AS_ROOT = os.geteuid() == 0
TIMEOUT = 10


class Init:
    """The init running on a config of ``services``, its output collected line by line."""

    def __init__(self, services, *, files=(), user="nobody"):
        self.process = subprocess.Popen(
            [sys.executable, init.__file__, "--config", "-", "--user", user],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        self.process.stdin.write(json.dumps({"services": services, "files": list(files)}))
        self.process.stdin.close()

    def _collect(self):
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))

    def expect(self, line: str) -> list[str]:
        """Wait for ``line``; return the output so far."""
        deadline = time.monotonic() + TIMEOUT
        while line not in self.lines:
            self.lines.append(self._new.get(timeout=deadline - time.monotonic()))
        return self.lines

    def finish(self) -> tuple[int, list[str]]:
        """Wait for the init to exit; return its code and all its output."""
        code = self.process.wait(TIMEOUT)
        self._collector.join(TIMEOUT)
        while not self._new.empty():
            self.lines.append(self._new.get())
        return code, self.lines


def service(name, script, ready="READY"):
    return {"name": name, "argv": ["sh", "-c", script], "ready": ready}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def pid_in(lines: list[str], name: str) -> int:
    return int(next(line for line in lines if line.startswith(f"{name}: pid "))[len(f"{name}: pid "):])


def test_ready_once_every_service_is_ready_and_sigterm_stops_all():
    running = Init(
        [
            service("fast", "echo pid $$; echo READY; exec sleep 30"),
            service("slow", "echo pid $$; echo warming up; sleep 0.5; echo up and READY; exec sleep 30", "up and"),
        ],
    )
    lines = running.expect("bottle-sidecar: ready")
    assert lines.index("slow: up and READY") < lines.index("bottle-sidecar: ready")
    assert {"fast: READY", "slow: warming up"} <= set(lines)
    running.process.send_signal(signal.SIGTERM)
    code, lines = running.finish()
    assert code == 0
    assert lines.count("bottle-sidecar: ready") == 1
    assert gone(pid_in(lines, "fast")) and gone(pid_in(lines, "slow"))


def test_a_service_exiting_is_reported_with_its_last_lines_and_stops_the_rest():
    running = Init(
        [
            service("steady", "echo pid $$; echo READY; sleep 30 & wait"),
            service("flaky", "echo READY; echo broken pipe >&2; exit 3"),
        ],
    )
    code, lines = running.finish()
    assert code == 1
    report = lines.index("bottle-sidecar: service flaky exited with code 3")
    assert lines[report + 1 :] == ["    READY", "    broken pipe"]
    assert gone(pid_in(lines, "steady"))


def test_a_service_killed_by_a_signal_says_which():
    code, lines = Init([service("victim", "echo READY; kill -KILL $$")]).finish()
    assert code == 1
    assert "bottle-sidecar: service victim exited with code -9 (killed by SIGKILL)" in lines


def test_a_service_that_cannot_start_stops_the_others(tmp_path):
    running = Init(
        [
            service("fine", "echo pid $$; echo READY; exec sleep 30"),
            {"name": "missing", "argv": [str(tmp_path / "no-such-program")], "ready": "x"},
        ],
    )
    code, lines = running.finish()
    assert code == 1
    assert any(line.startswith("bottle-sidecar: service missing could not start:") for line in lines)


@pytest.mark.skipif(not AS_ROOT, reason="services keep the init's user unless it is root")
def test_as_root_services_run_as_the_given_user():
    running = Init([service("who", 'echo "$(id -u) $HOME"; echo READY; exec sleep 30')])
    lines = running.expect("bottle-sidecar: ready")
    running.process.send_signal(signal.SIGTERM)
    assert running.finish()[0] == 0
    assert "who: 65534 /nonexistent" in lines


@pytest.mark.skipif(not AS_ROOT, reason="the user is looked up only when the init is root")
def test_unknown_user_is_reported():
    code, lines = Init([service("a", "true")], user="no-such-user-here").finish()
    assert code == 2
    assert lines == ["bottle-sidecar: no user 'no-such-user-here' to run the services as"]


@pytest.fixture
def open_dir():
    """A directory the services' user (nobody, when root runs the tests) can reach; tmp_path's parents are 0700."""
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        yield Path(directory)


def test_files_are_written_with_their_mode_before_the_services_start(open_dir):
    secret = open_dir / "run" / "bottle" / "key.pem"
    public = open_dir / "policy.json"
    running = Init(
        [service("reader", f"cat {secret}; echo; echo READY; exec sleep 30")],
        files=[{"path": str(secret), "content": "KEY"}, {"path": str(public), "content": "{}", "mode": 0o644}],
    )
    lines = running.expect("bottle-sidecar: ready")
    running.process.send_signal(signal.SIGTERM)
    assert running.finish()[0] == 0
    assert "reader: KEY" in lines
    assert (secret.stat().st_mode & 0o777, public.stat().st_mode & 0o777) == (0o600, 0o644)
    assert (open_dir / "run").stat().st_mode & 0o777 == 0o700
    if AS_ROOT:
        assert {secret.stat().st_uid, (open_dir / "run").stat().st_uid, public.stat().st_uid} == {65534}


def test_the_config_may_be_a_file(tmp_path):
    config = tmp_path / "sidecar.json"
    config.write_text(json.dumps({"services": [service("a", "exit 5")]}))
    result = subprocess.run(
        [sys.executable, init.__file__, "--config", str(config), "--user", "nobody"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (1, "bottle-sidecar: service a exited with code 5\n")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["services"], "expected a JSON object"),
        ({"services": "egress"}, "'services' must be a list"),
        ({"services": [{"name": "", "argv": ["x"], "ready": "r"}]}, "services[0].name must be a non-empty string"),
        ({"services": [{"name": "a", "argv": [], "ready": "r"}]}, "services[0].argv must be a non-empty list"),
        ({"services": [{"name": "a", "argv": ["x", 1], "ready": "r"}]}, "services[0].argv must be a non-empty list"),
        ({"services": [{"name": "a", "argv": ["x"]}]}, "services[0].ready must be a non-empty string"),
        (
            {"services": [{"name": "a", "argv": ["x"], "ready": "r"}, {"name": "a", "argv": ["y"], "ready": "r"}]},
            "services[1].name 'a' is used twice",
        ),
        ({"services": [], "files": {}}, "'files' must be a list"),
        ({"services": [], "files": [{"path": "rel", "content": ""}]}, "files[0].path must be an absolute path"),
        ({"services": [], "files": [{"path": "/a", "content": 1}]}, "files[0].content must be a string"),
        ({"services": [], "files": [{"path": "/a", "content": "", "mode": 0o4755}]}, "files[0].mode must be"),
    ],
)
def test_bad_config_names_the_field(tmp_path, config, message):
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps(config))
    with pytest.raises(init.ConfigError, match=re.escape(message)):
        init.load_config(str(path))


def test_missing_config_exits_2_naming_the_file(tmp_path):
    result = subprocess.run(
        [sys.executable, init.__file__, "--config", str(tmp_path / "absent.json")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stdout.startswith(f"bottle-sidecar: bad config {tmp_path / 'absent.json'}:")


def absolute_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_init_needs_only_the_stdlib():
    assert absolute_imports(Path(init.__file__)) <= sys.stdlib_module_names


def test_the_sidecar_package_imports_nothing_from_bottle():
    """In the image it is the top-level package bottle_sidecar: only relative imports reach its siblings."""
    for module in Path(init.__file__).parent.glob("*.py"):
        assert "bottle" not in absolute_imports(module), module.name
