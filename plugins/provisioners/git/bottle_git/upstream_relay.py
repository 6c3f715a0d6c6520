"""A local upstream repository, served to the git gate by the host, as the repository's owner.

The gate forwards what passes its checks upstream from inside its pre-receive
hook; for a local upstream that is a ``git receive-pack`` writing objects and
refs into the user's repository. Run in the sidecar, on the repository
bind-mounted, it would write them as the sidecar's uid instead of the
repository's owner, and a sidecar taken over would hold the whole repository:
its config and hooks among it, which git runs on the host.

So the repository never enters the sidecar. The gate's git runs
``bottle_gitgate_sidecar.upstream_pipe`` as its upload-pack and receive-pack, which
connects to a Unix socket bind-mounted into the sidecar and passes its stdin,
stdout and stderr over it (``SCM_RIGHTS``) with one line saying which of the
two it stands for. For each connection the host runs that git command on the
repository, with those three as its own: the two gits speak the pack protocol
directly, and the host answers the exit code. Nothing else runs: no other
command, no other repository, nothing from the sidecar's environment but the
protocol version (``GIT_PROTOCOL``), and only pipes are taken as the three.

When bottle runs as root, git runs as the repository's owner: what it writes
is theirs, exactly as if they had pushed, and their git config applies. Run by
anyone else, it runs as that user, who can be no one else.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from contextlib import suppress
from pathlib import Path

SOCKET_NAME = "upstream.sock"
VERBS = ("upload-pack", "receive-pack")
MAX_AT_ONCE = 4  # git commands at a time; more connections wait: a sidecar cannot fill the host with them
MAX_REQUEST = 256
PROTOCOL = re.compile(r"[A-Za-z0-9=:._-]{0,64}")  # what GIT_PROTOCOL may hold (version=2)


class UpstreamRelay:
    """Serves *repository* on a Unix socket in a private directory of its own (a socket's
    path has at most 107 bytes, which the bottle's state dir may not leave); started by
    :meth:`start`, until :meth:`stop`."""

    def __init__(self, repository: Path):
        self.repository = repository
        self._switch, self._home = _account(repository)
        self._directory = Path(tempfile.mkdtemp(prefix="bottle-upstream-"))
        self.socket_path = self._directory / SOCKET_NAME
        self._listener = socket.socket(socket.AF_UNIX)
        self._slots = threading.BoundedSemaphore(MAX_AT_ONCE)
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, client: tuple[int, int]) -> None:
        """Listen, the socket owned by *client* (uid, gid: the sidecar's user), and serve in the background."""
        self._listener.bind(str(self.socket_path))
        os.chown(self.socket_path, *client)
        os.chmod(self.socket_path, 0o600)
        self._listener.listen(MAX_AT_ONCE)
        threading.Thread(target=self._serve, daemon=True, name="upstream-relay").start()

    def stop(self) -> None:
        """Stop listening, end the git commands still running and remove the socket."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._listener.close()
        for process in running:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        shutil.rmtree(self._directory, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # stopped
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, self._slots:
            fds: list[int] = []
            try:
                message, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 3)
                code = self._run(message, fds)
            except OSError:
                return  # the sidecar went away
            finally:
                for fd in fds:
                    os.close(fd)
            with suppress(OSError):
                connection.sendall(f"{code}\n".encode())

    def _run(self, message: bytes, fds: list[int]) -> int:
        """Run the git command *message* asks for on the stdin, stdout and stderr *fds*; its exit code."""
        if len(fds) != 3 or not all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in fds):
            return 128  # nowhere safe to say why: the pipe says so on its side
        verb, _, protocol = message.decode(errors="replace").rstrip("\n").partition(" ")
        if verb not in VERBS or not PROTOCOL.fullmatch(protocol):
            return _refuse(fds[2], f"only {' and '.join(VERBS)} are served, not {message[:80]!r}")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": self._home}
        if protocol:
            env["GIT_PROTOCOL"] = protocol
        with self._lock:
            if self._stopped:
                return 128
            try:
                # "." in the repository: git's messages name no host path the agent could read.
                process = subprocess.Popen(["git", verb, "."], cwd=self.repository, env=env, stdin=fds[0],
                                           stdout=fds[1], stderr=fds[2], **self._switch)
            except OSError as err:
                return _refuse(fds[2], f"the local upstream cannot be opened: {err.strerror}")
            self._running.add(process)
        try:
            return process.wait()
        finally:
            with self._lock:
                self._running.discard(process)


def _account(repository: Path) -> tuple[dict, str]:
    """Whom git runs as on *repository*, as Popen's arguments, and its HOME: the repository's
    owner when bottle runs as root, else bottle's own user."""
    if os.geteuid() != 0:
        return {}, os.environ.get("HOME", "/")
    owner = repository.stat()
    try:
        entry = pwd.getpwuid(owner.st_uid)
    except KeyError:  # an owner with no account here: no other group, and no git config of theirs
        return {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}, "/"
    groups = os.getgrouplist(entry.pw_name, owner.st_gid)
    return {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": groups}, entry.pw_dir


def _refuse(stderr: int, why: str) -> int:
    with suppress(OSError):
        os.write(stderr, f"fatal: bottle: {why}\n".encode())
    return 128
