"""The host serves a local upstream to the gate: upload-pack and receive-pack only, on that
repository only, as its owner (someone else when bottle runs as root)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bottle_gitgate_sidecar import upstream_pipe
from bottle_git.upstream_relay import UpstreamRelay
from test_gitgate import Gate, git, ref, start_gate

#: Who owns the upstream: as root, someone without an account here, whose files git must write as theirs.
OWNER = 4242 if os.geteuid() == 0 else os.getuid()
PIPE = [sys.executable, "-IS", upstream_pipe.__file__]


@pytest.fixture
def upstream():
    """A bare repository with a main branch, owned by OWNER, in a directory OWNER can reach
    (the test's own may be root's and 0700)."""
    base = Path(tempfile.mkdtemp(prefix="bottle-relay-test-"))
    base.chmod(0o755)
    bare, seed = base / "upstream.git", base / "seed"
    git("init", "--quiet", "--bare", "-b", "main", str(bare), cwd=base)
    git("init", "--quiet", "-b", "main", str(seed), cwd=base)
    (seed / "README.md").write_text("the project\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "start", cwd=seed)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=seed)
    for path in [bare, *bare.rglob("*")]:
        os.chown(path, OWNER, OWNER, follow_symlinks=False)
    yield bare
    shutil.rmtree(base)


@pytest.fixture
def relay(upstream):
    served = UpstreamRelay(upstream)
    served.start((os.getuid(), os.getgid()))  # the "sidecar" here is this process's user
    yield served
    served.stop()


def upstream_ref(repository: Path, name: str) -> str:
    """*name* in *repository*, read by this process (which may not own it)."""
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repository), "rev-parse", name],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_push_through_the_gate_lands_upstream_written_by_the_repositorys_owner(tmp_path, upstream, relay):
    gate = start_gate(tmp_path, {"bottle": "relay-test", "upstream": "/bottle/upstream",
                                 "relay": str(relay.socket_path), "push_refs": ["refs/heads/bottle/*"],
                                 "fetch_refs": ["HEAD"]})
    assert isinstance(gate, Gate), gate.stdout
    clone = tmp_path / "clone"
    try:
        git("clone", "--quiet", gate.url, str(clone), cwd=tmp_path)
        (clone / "work.txt").write_text("work\n")
        git("add", "work.txt", cwd=clone)
        git("commit", "--quiet", "-m", "work", cwd=clone)
        pushed = git("push", "origin", "HEAD:refs/heads/bottle/relayed", cwd=clone, check=False)
    finally:
        gate.stop()

    assert pushed.returncode == 0, pushed.stderr
    assert upstream_ref(upstream, "refs/heads/bottle/relayed") == ref(clone, "HEAD")
    assert ref(clone, "origin/main") == upstream_ref(upstream, "refs/heads/main")  # fetched through the relay
    strangers = [str(path) for path in [upstream, *upstream.rglob("*")] if path.lstat().st_uid != OWNER]
    assert strangers == [], f"written by someone else than the repository's owner: {strangers}"


def test_a_push_the_upstream_cannot_take_fails_with_its_reason_and_no_host_path(tmp_path, upstream, relay):
    moved = upstream.with_name("elsewhere.git")
    upstream.rename(moved)
    try:
        done = subprocess.run(["git", "ls-remote", f"--upload-pack={' '.join(PIPE)} {relay.socket_path} upload-pack",
                               "/bottle/upstream"], capture_output=True, text=True)
    finally:
        moved.rename(upstream)
    assert done.returncode != 0
    assert "the local upstream cannot be opened" in done.stderr and str(upstream) not in done.stderr, done.stderr


def ask(relay: UpstreamRelay, request: bytes, fds: list[int]) -> str:
    """Send *request* and *fds* as the pipe does; the relay's answer."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(relay.socket_path))
        socket.send_fds(connection, [request], fds)
        return connection.makefile("rb").readline().decode()


def test_no_other_command_is_run(relay):
    stdin, stdout, stderr = os.pipe(), os.pipe(), os.pipe()
    answer = ask(relay, b"upload-archive \n", [stdin[0], stdout[1], stderr[1]])
    for fd in (*stdin, stdout[1], stderr[1]):
        os.close(fd)
    said = os.read(stderr[0], 1000).decode()
    assert answer == "128\n" and "only upload-pack and receive-pack are served" in said, said
    assert os.read(stdout[0], 1000) == b""  # and git wrote nothing


def test_only_pipes_are_taken_as_the_commands_stdin_stdout_and_stderr(relay, tmp_path):
    target = tmp_path / "a-file"
    with open(target, "wb") as file:
        assert ask(relay, b"upload-pack \n", [file.fileno()] * 3) == "128\n"
    assert target.read_bytes() == b""


def test_the_pipe_says_so_when_the_host_does_not_answer(tmp_path):
    done = subprocess.run([*PIPE, str(tmp_path / "nobody.sock"), "upload-pack", "/bottle/upstream"],
                          capture_output=True, text=True)
    assert done.returncode == 128 and "the host does not serve the local upstream" in done.stderr


def test_stopped_it_takes_no_connection_and_leaves_no_socket(upstream):
    served = UpstreamRelay(upstream)
    served.start((os.getuid(), os.getgid()))
    served.stop()
    assert not served.socket_path.parent.exists()
    with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(served.socket_path))
