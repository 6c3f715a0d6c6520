"""The sidecar's init: start the daemons the host asked for and stop all when one dies.

Run in the sidecar image as ``python -m bottle_sidecar.init [--config PATH]``
under tini (PID 1, which reaps orphans and passes signals on). The host decides
what runs: the config (``/run/bottle/sidecar.json``, or stdin with ``--config -``)
lists the services, each with the argv to start and the line prefix it prints
once it is ready, and the files to write before they start::

    {"services": [{"name": "egress", "argv": ["python", "-m", "bottle_egress_sidecar.main", "..."],
                   "ready": "bottle-egress: listening"}],
     "files": [{"path": "/run/bottle/credentials.json", "content": "...", "mode": 384}]}

Files are how secrets (the CA key, credential values) arrive when the config
comes on stdin: never in argv, env, a label or an image layer. They are written
with their mode (default 0600) and owned by the services' user.

What the host reads on the container's output:

- every line a service prints (stdout and stderr), as ``NAME: LINE``;
- ``bottle-sidecar: ready``, once, when every service has printed its ready line;
- ``bottle-sidecar: service NAME exited with code N`` and that service's last
  lines, indented, when any service exits for whatever reason. A bottle without
  one of its guards must not go on, so the init then stops the other services
  and exits 1, and the host stops the bottle.

SIGTERM or SIGINT stops the services and exits 0. Services run as the
unprivileged ``sidecar`` user when the init runs as root (as in the image), each
in its own process group so that stopping one stops its helpers too.

This module is stdlib only and imports nothing from bottle: in the image it is
the top-level package ``bottle_sidecar``. It stays resident beside the daemons,
within the sidecar's memory budget, so it skips dataclasses and pathlib (2 MB).
"""

import argparse
import json
import os
import pwd
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import NamedTuple

DEFAULT_CONFIG = "/run/bottle/sidecar.json"
DEFAULT_USER = "sidecar"
TAIL_LINES = 20
MAX_LINE = 64 * 1024  # a service writing without newlines cannot make the init grow without bound
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping the services
EXIT_READ_GRACE = 1.0  # seconds to collect a dead service's last output before reporting it


class ConfigError(Exception):
    """The config file is missing or not what the host should have written."""


class Stop(Exception):
    """Raised by the signal handler: the host is stopping the sidecar."""


class Service(NamedTuple):
    name: str
    argv: list[str]
    ready: str


class File(NamedTuple):
    path: str
    content: str
    mode: int


class Running:
    """A started service, with threads that relay its output and report its exit
    as ("line", name, text) and ("exit", name, code) events."""

    def __init__(self, service: Service, process: subprocess.Popen, events: queue.Queue):
        self.service = service
        self.process = process
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        reader = threading.Thread(target=self._relay, args=(events,), daemon=True)
        # Exit is watched apart from output: a helper the service left behind may
        # keep the pipe open after the service itself is gone.
        self.waiter = threading.Thread(target=self._wait, args=(reader, events), daemon=True)
        reader.start()
        self.waiter.start()

    def _relay(self, events: queue.Queue) -> None:
        for raw in iter(lambda: self.process.stdout.readline(MAX_LINE), b""):
            events.put(("line", self.service.name, raw.decode(errors="replace").rstrip("\r\n")))

    def _wait(self, reader: threading.Thread, events: queue.Queue) -> None:
        code = self.process.wait()
        reader.join(EXIT_READ_GRACE)
        events.put(("exit", self.service.name, code))


def load_config(path: str) -> tuple[list[Service], list[File]]:
    """The services and files in the config at ``path`` ("-": stdin), checked field by field."""
    try:
        if path == "-":
            config = json.load(sys.stdin)
        else:
            with open(path) as file:
                config = json.load(file)
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if not isinstance(config, dict):
        raise ConfigError("expected a JSON object")
    return _services(config.get("services")), _files(config.get("files", []))


def _services(entries: object) -> list[Service]:
    if not isinstance(entries, list):
        raise ConfigError("'services' must be a list")
    services: list[Service] = []
    for number, entry in enumerate(entries):
        where = f"services[{number}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object")
        name, argv, ready = entry.get("name"), entry.get("argv"), entry.get("ready")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name must be a non-empty string")
        if name in (service.name for service in services):
            raise ConfigError(f"{where}.name {name!r} is used twice")
        if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise ConfigError(f"{where}.argv must be a non-empty list of strings")
        if not isinstance(ready, str) or not ready:
            raise ConfigError(f"{where}.ready must be a non-empty string")
        services.append(Service(name, argv, ready))
    return services


def _files(entries: object) -> list[File]:
    if not isinstance(entries, list):
        raise ConfigError("'files' must be a list")
    files = []
    for number, entry in enumerate(entries):
        where = f"files[{number}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object")
        path, content, mode = entry.get("path"), entry.get("content"), entry.get("mode", 0o600)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"{where}.path must be an absolute path")
        if not isinstance(content, str):
            raise ConfigError(f"{where}.content must be a string")
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ConfigError(f"{where}.mode must be a permission number (0 to 0o777)")
        files.append(File(path, content, mode))
    return files


def write_files(files: list[File], owner: tuple[int, int] | None) -> None:
    """Write ``files`` (and missing parent directories, 0700) owned by ``owner``
    (uid, gid), or by the init's user when None."""
    for file in files:
        _make_parents(os.path.dirname(file.path), owner)
        descriptor = os.open(file.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w") as handle:
            os.fchmod(descriptor, file.mode)  # the umask must not narrow it
            if owner is not None:
                os.fchown(descriptor, *owner)
            handle.write(file.content)


def _make_parents(directory: str, owner: tuple[int, int] | None) -> None:
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        if owner is not None:
            os.chown(path, *owner)


def service_user(user: str) -> pwd.struct_passwd | None:
    """The account services run as: ``user`` when the init is root, else None
    (they keep the init's own user, as in the image and in tests on a host).
    An empty ``user`` keeps the init's user even as root: the host runs the
    sidecar as its own user, without the capabilities to switch.
    KeyError when there is no such user."""
    return pwd.getpwnam(user) if user and os.geteuid() == 0 else None


def run_as(account: pwd.struct_passwd | None) -> dict:
    """Popen arguments that run a service as ``account``."""
    if account is None:
        return {}
    env = {**os.environ, "HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "env": env}


def start(service: Service, as_user: dict, events: queue.Queue) -> Running:
    """Start ``service`` with stdout and stderr merged into one pipe, in its own process group."""
    process = subprocess.Popen(
        service.argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **as_user,
    )
    return Running(service, process, events)


def supervise(running: dict[str, Running], events: queue.Queue) -> int:
    """Relay output and announce readiness until a service exits; then report it and return 1."""
    waiting = set(running)
    if not waiting:
        say("ready")
    while True:
        kind, name, value = events.get()
        current = running[name]
        if kind == "line":
            print(f"{name}: {value}", flush=True)
            current.tail.append(value)
            if name in waiting and value.startswith(current.service.ready):
                waiting.discard(name)
                if not waiting:
                    say("ready")
            continue
        say(f"service {name} exited with code {value}" + _signal_note(value))
        for line in current.tail:
            print(f"    {line}", flush=True)
        return 1


def _signal_note(code: int) -> str:
    if code >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-code).name})"
    except ValueError:
        return ""


def stop_all(running: list[Running]) -> None:
    """SIGTERM every service's process group, then SIGKILL those still there after STOP_GRACE."""
    for item in running:
        _signal_group(item.process, signal.SIGTERM)
    for item in running:
        item.waiter.join(STOP_GRACE)  # the grace is shared: later joins find their service gone
        if item.process.returncode is None:
            _signal_group(item.process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def say(message: str) -> None:
    print(f"bottle-sidecar: {message}", flush=True)


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bottle_sidecar.init", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"JSON file, - for stdin (default: {DEFAULT_CONFIG})")
    parser.add_argument("--user", default=DEFAULT_USER, help="user the services run as when the init is root")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    running: dict[str, Running] = {}
    try:
        return run(args.config, args.user, running)
    except Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all(list(running.values()))


def run(config: str, user: str, running: dict[str, Running]) -> int:
    """Read the config, write its files, start its services (into ``running``,
    which the caller stops) and supervise them; return the exit code."""
    try:
        services, files = load_config(config)
    except ConfigError as err:
        say(f"bad config {'stdin' if config == '-' else config}: {err}")
        return 2
    try:
        account = service_user(user)
    except KeyError:
        say(f"no user {user!r} to run the services as")
        return 2
    try:
        write_files(files, account and (account.pw_uid, account.pw_gid))
    except OSError as err:
        say(f"cannot write the config's files: {err}")
        return 2
    events: queue.Queue = queue.Queue()
    for service in services:
        try:
            running[service.name] = start(service, run_as(account), events)
        except OSError as err:
            say(f"service {service.name} could not start: {err}")
            return 1
    return supervise(running, events)


if __name__ == "__main__":
    sys.exit(main())
