"""The git gate as it runs in the sidecar: ``python -m bottle.sidecar.gitgate`` in a
subprocess, with real git on both sides. Upstream is a local bare repository;
the agent is a clone through the gate on 127.0.0.1.

One gate serves the module (its ``max_push_mb`` is 1, so that an oversized push
is small). Each test works on a branch of its own, starting from upstream's
main, and checks upstream itself after every refused push.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bottle.sidecar import gitgate
from bottle.sidecar.audit import read_events
from bottle.sidecar.gitgate import Config, StartupError, Upstream, git_env, load_config
from bottle.sidecar.gitgate_check import GitError, Rules

AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLQ"
OLD_AWS_KEY = "AKIA" + "J2MBQ7XNOVWE3KRT"  # committed upstream long ago
PRIVATE_KEY = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2xw4rtV3" + "q" * 20,
                         "-----END RSA PRIVATE KEY-----", ""])
SECRETS = (AWS_KEY, OLD_AWS_KEY, "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2xw4rtV3")
TOKEN = "ghp_" + "T0kenOnlyTheGateHolds0123456789abcdef"
CLIENT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
              "GIT_AUTHOR_NAME": "Agent", "GIT_AUTHOR_EMAIL": "agent@example.com",
              "GIT_COMMITTER_NAME": "Agent", "GIT_COMMITTER_EMAIL": "agent@example.com"}
TIMEOUT = 60


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=cwd, env=CLIENT_ENV, capture_output=True, text=True, timeout=TIMEOUT)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{done.stderr}")
    return done


def ref(repo: Path, name: str) -> str | None:
    """*name*'s commit in *repo*, or None when there is no such ref."""
    done = git("rev-parse", "--verify", "--quiet", name, cwd=repo, check=False)
    return done.stdout.strip() or None


@dataclass
class Gate:
    process: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(TIMEOUT)


def start_gate(directory: Path, config: dict, module: str = "bottle.sidecar.gitgate", env: dict | None = None,
               credentials: dict | None = None) -> Gate | subprocess.CompletedProcess:
    """Start a gate on 127.0.0.1 (a free port); the running Gate, or the finished process if it did not start."""
    config_file = directory / "gate.json"
    config_file.write_text(json.dumps(config))
    argv = [sys.executable, "-m", module, "--listen-host", "127.0.0.1", "--listen-port", "0",
            "--repo", str(directory / "gate.git"), "--config", str(config_file),
            "--audit", str(directory / "audit.sqlite")]
    if credentials is not None:
        secrets = directory / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "credentials.json").write_text(json.dumps(credentials))
        (secrets / "credentials.json").chmod(0o600)
        argv += ["--credentials", str(secrets / "credentials.json")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in process.stdout:
        lines.append(line)
        match = re.match(r"bottle-gitgate: listening on (\S+)", line)
        if match:
            gate = Gate(process, f"http://{match.group(1)}/repo.git", lines)
            threading.Thread(target=lambda: gate.log.extend(process.stdout), daemon=True).start()
            return gate
    return subprocess.CompletedProcess(process.args, process.wait(TIMEOUT), "".join(lines))


@dataclass
class World:
    dir: Path
    upstream: Path
    clone: Path
    gate: Gate

    @property
    def audit(self) -> Path:
        return self.dir / "audit.sqlite"

    def branch(self, name: str) -> None:
        """Start the agent's work on *name* from upstream's main, as the gate has it."""
        git("checkout", "--quiet", "--force", "-B", name, "origin/main", cwd=self.clone)

    def commit(self, files: dict[str, str | bytes], message: str = "work") -> str:
        for path, content in files.items():
            target = self.clone / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        git("add", "--all", cwd=self.clone)
        git("commit", "--quiet", "-m", message, cwd=self.clone)
        return ref(self.clone, "HEAD")

    def push(self, *refspecs: str) -> subprocess.CompletedProcess:
        return git("push", "origin", *refspecs, cwd=self.clone, check=False)

    def upstream_refs(self) -> dict[str, str]:
        out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.upstream).stdout
        return dict(line.split() for line in out.splitlines())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    directory = tmp_path_factory.mktemp("gitgate")
    upstream, seed = directory / "upstream.git", directory / "seed"
    git("init", "--quiet", "--bare", "-b", "main", str(upstream), cwd=directory)
    git("init", "--quiet", "-b", "main", str(seed), cwd=directory)
    (seed / "README.md").write_text("the project\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "start", cwd=seed)
    git("push", "--quiet", str(upstream), "HEAD:refs/heads/main", "HEAD:refs/heads/bottle/preexisting", cwd=seed)
    (seed / "config.ini").write_text(f"[aws]\nkey = {OLD_AWS_KEY}\n")  # a secret upstream already has
    git("add", "config.ini", cwd=seed)
    git("commit", "--quiet", "-m", "settings", cwd=seed)
    git("tag", "v1", cwd=seed)
    git("push", "--quiet", str(upstream), "HEAD:refs/heads/main", "refs/tags/v1", cwd=seed)
    gate = start_gate(directory, {"bottle": "gate-test", "upstream": str(upstream),
                                  "protected": ["refs/heads/main"], "max_push_mb": 1})
    assert isinstance(gate, Gate), gate.stdout
    clone = directory / "clone"
    git("clone", "--quiet", gate.url, str(clone), cwd=directory)
    yield World(directory, upstream, clone, gate)
    gate.stop()


def refused(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """The push failed, and git showed the agent the gate's reasons (as "remote:" lines)."""
    assert done.returncode != 0, done.stderr
    assert "remote: bottle git gate: push refused" in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, f"{fragment!r} not in:\n{done.stderr}"
    return done.stderr


def test_a_clone_through_the_gate_has_upstream_branches_tags_and_default_branch(world):
    assert ref(world.clone, "HEAD") == ref(world.upstream, "main")
    assert git("symbolic-ref", "HEAD", cwd=world.clone).stdout.strip() == "refs/heads/main"
    remote = git("ls-remote", "origin", cwd=world.clone).stdout
    assert "refs/heads/bottle/preexisting" in remote and "refs/tags/v1" in remote


def test_a_clean_push_to_an_allowed_branch_lands_upstream(world):
    world.branch("bottle/clean")
    commit = world.commit({"src/app.py": "print('hello')\n"}, "add the app")
    done = world.push("HEAD:bottle/clean")
    assert done.returncode == 0, done.stderr
    assert "refs/heads/bottle/clean forwarded to upstream" in done.stderr
    assert ref(world.upstream, "refs/heads/bottle/clean") == commit
    assert ref(world.clone, "refs/remotes/origin/bottle/clean") == commit


def test_several_refs_in_one_push_land_together(world):
    world.branch("bottle/one")
    commit = world.commit({"one.txt": "1\n"})
    done = world.push("HEAD:bottle/one", "HEAD:bottle/two")
    assert done.returncode == 0, done.stderr
    assert ref(world.upstream, "refs/heads/bottle/one") == ref(world.upstream, "refs/heads/bottle/two") == commit


def test_a_push_to_the_protected_main_is_refused_and_upstream_unchanged(world):
    before = world.upstream_refs()
    world.branch("to-main")
    world.commit({"notes.txt": "mine\n"})
    message = refused(world.push("HEAD:main"), "refs/heads/main is protected",
                      "instead: push your work to a branch of your own (git push origin HEAD:bottle/<name>)")
    assert "[remote rejected] HEAD -> main (pre-receive hook declined)" in message
    assert world.upstream_refs() == before


def test_a_push_outside_push_refs_is_refused(world):
    before = world.upstream_refs()
    world.branch("feature")
    world.commit({"feature.txt": "x\n"})
    refused(world.push("HEAD:refs/heads/feature", "HEAD:refs/tags/mine"),
            "refs/heads/feature is not a ref the agent may push (allowed: refs/heads/bottle/*)",
            "refs/tags/mine is not a ref the agent may push")
    assert world.upstream_refs() == before


def test_a_force_push_is_refused_and_upstream_keeps_its_history(world):
    world.branch("bottle/force")
    first = world.commit({"a.txt": "one\n"})
    assert world.push("HEAD:bottle/force").returncode == 0
    git("commit", "--quiet", "--amend", "-m", "rewritten", cwd=world.clone)
    refused(world.push("--force", "HEAD:bottle/force"), "refs/heads/bottle/force would lose commits",
            "git fetch origin, rebase or merge your work onto origin/bottle/force")
    assert ref(world.upstream, "refs/heads/bottle/force") == first


def test_deleting_a_branch_the_gate_did_not_create_is_refused(world):
    before = world.upstream_refs()
    refused(world.push(":bottle/preexisting"), "refs/heads/bottle/preexisting was not created through the gate")
    assert world.upstream_refs() == before


def test_a_branch_created_through_the_gate_may_be_deleted(world):
    world.branch("bottle/temporary")
    world.commit({"tmp.txt": "soon gone\n"})
    assert world.push("HEAD:bottle/temporary").returncode == 0
    done = world.push(":bottle/temporary")
    assert done.returncode == 0, done.stderr
    assert ref(world.upstream, "refs/heads/bottle/temporary") is None


def test_an_oversized_push_is_refused(world):
    before = world.upstream_refs()
    world.branch("bottle/big")
    world.commit({"blob.bin": os.urandom(1536 * 1024)})  # random: the pack is as big as the file
    refused(world.push("HEAD:bottle/big"), "the push adds 1.5 MB of objects, more than the 1 MB a push may add",
            "push in smaller steps")
    assert world.upstream_refs() == before


def test_a_push_far_beyond_the_limit_is_cut_off_by_git_and_audited(world):
    """Past twice max_push_mb git refuses the pack as it comes, before it fills the
    sidecar's disk and before the hook: the HTTP layer audits it."""
    before = world.upstream_refs()
    since = max((event["id"] for event in read_events(world.audit)), default=0)
    world.branch("bottle/huge")
    world.commit({"huge.bin": os.urandom(3 * 1024 * 1024)})
    done = world.push("HEAD:bottle/huge")
    assert done.returncode != 0 and "pack exceeds maximum allowed size" in done.stderr, done.stderr
    assert world.upstream_refs() == before
    [event] = read_events(world.audit, since_id=since)
    assert (event["decision"], event["path"], event["detail"]["check"]) == ("blocked", None, "size")
    assert "git refused it before the checks (a push may add 1 MB)" in event["reason"]


@pytest.mark.parametrize(("files", "where"), [
    ({"deploy/id_rsa": "# the deploy key\n" + PRIVATE_KEY}, "Private Key in deploy/id_rsa line 2"),
    ({"settings.py": f"DEBUG = True\nAWS_ACCESS_KEY_ID = '{AWS_KEY}'\n"}, "AWS Access Key in settings.py line 2"),
])
def test_a_secret_in_a_new_commit_is_refused_by_file_line_and_detector(world, files, where):
    before = world.upstream_refs()
    world.branch("bottle/leak")
    world.commit({"clean.txt": "fine\n"}, "clean first")
    commit = world.commit(files, "then the leak")
    world.commit({"clean.txt": "fine again\n"}, "and clean after")
    message = refused(world.push("HEAD:bottle/leak"), "the new commits hold what looks like a secret",
                      f"{where} (commit {commit[:12]})", "take it out of every new commit")
    assert not any(secret in message for secret in SECRETS)
    assert world.upstream_refs() == before


def test_a_secret_in_a_commit_message_is_refused(world):
    world.branch("bottle/message")
    world.commit({"ok.txt": "ok\n"}, f"use {AWS_KEY} for the demo")
    message = refused(world.push("HEAD:bottle/message"), "AWS Access Key in the commit message")
    assert AWS_KEY not in message
    assert ref(world.upstream, "refs/heads/bottle/message") is None


def test_a_secret_upstream_already_has_does_not_block_new_work(world):
    """config.ini's key is in upstream's history: adding to that file, and then taking
    the key out, are both fine (the scanner sees the key on a removed line)."""
    world.branch("bottle/on-top")
    world.commit({"config.ini": f"[aws]\nkey = {OLD_AWS_KEY}\nregion = eu-west-1\n"}, "add a region")
    world.commit({"config.ini": "[aws]\nregion = eu-west-1\n"}, "take the key out")
    done = world.push("HEAD:bottle/on-top")
    assert done.returncode == 0, done.stderr
    assert ref(world.upstream, "refs/heads/bottle/on-top") == ref(world.clone, "HEAD")


def test_merging_upstream_history_with_a_secret_is_not_a_new_secret(world):
    """A merge brings config.ini (and its old key) from main: only what the merge itself
    adds against both parents counts."""
    git("checkout", "--quiet", "--force", "-B", "bottle/merge", "origin/main~1", cwd=world.clone)
    world.commit({"side.txt": "side work\n"}, "side work")
    git("merge", "--quiet", "--no-edit", "origin/main", cwd=world.clone)
    done = world.push("HEAD:bottle/merge")
    assert done.returncode == 0, done.stderr


def test_an_evil_merge_adding_a_secret_is_refused(world):
    git("checkout", "--quiet", "--force", "-B", "bottle/evil", "origin/main~1", cwd=world.clone)
    world.commit({"side.txt": "side work\n"}, "side work")
    git("merge", "--quiet", "--no-commit", "origin/main", cwd=world.clone)
    (world.clone / "side.txt").write_text(f"side work\nkey = {AWS_KEY}\n")
    git("commit", "--quiet", "-am", "merge main", cwd=world.clone)
    refused(world.push("HEAD:bottle/evil"), "AWS Access Key in side.txt line 2")
    assert ref(world.upstream, "refs/heads/bottle/evil") is None


def test_one_refused_ref_refuses_the_whole_push(world):
    before = world.upstream_refs()
    world.branch("bottle/pair")
    world.commit({"pair.txt": "fine\n"})
    refused(world.push("HEAD:bottle/pair", "HEAD:main"),
            "refs/heads/bottle/pair: passed the checks, but a push is all or nothing")
    assert world.upstream_refs() == before


def test_unreachable_upstream_fails_the_push_and_loses_nothing(world):
    world.branch("bottle/offline")
    commit = world.commit({"offline.txt": "written while upstream was away\n"})
    away = world.upstream.with_name("upstream-away.git")
    world.upstream.rename(away)
    try:
        message = refused(world.push("HEAD:bottle/offline"), "upstream did not take the push",
                          "does not appear to be a git repository", "your commits are still in your clone")
    finally:
        away.rename(world.upstream)
    assert "bottle/offline" not in git("ls-remote", "origin", cwd=world.clone).stdout  # the gate kept nothing
    assert ref(world.upstream, "refs/heads/bottle/offline") is None
    assert ref(world.clone, "HEAD") == commit
    assert str(world.upstream) in message  # git's own words about upstream reach the agent
    done = world.push("HEAD:bottle/offline")  # once upstream is back, the same push goes through
    assert done.returncode == 0, done.stderr
    assert ref(world.upstream, "refs/heads/bottle/offline") == commit


def test_a_branch_someone_moved_upstream_is_not_overwritten_and_a_fetch_catches_up(world, tmp_path):
    world.branch("bottle/shared")
    world.commit({"shared.txt": "agent\n"})
    assert world.push("HEAD:bottle/shared").returncode == 0
    other = tmp_path / "other"
    git("clone", "--quiet", "--branch", "bottle/shared", str(world.upstream), str(other), cwd=tmp_path)
    (other / "human.txt").write_text("a human was here\n")
    git("add", ".", cwd=other)
    git("commit", "--quiet", "-m", "human", cwd=other)
    git("push", "--quiet", "origin", "HEAD:bottle/shared", cwd=other)
    theirs = ref(other, "HEAD")
    world.commit({"shared.txt": "agent, again\n"})
    refused(world.push("HEAD:bottle/shared"), "upstream did not take the push", "stale info")
    assert ref(world.upstream, "refs/heads/bottle/shared") == theirs
    git("pull", "--quiet", "--rebase", "origin", "bottle/shared", cwd=world.clone)  # the gate fetches upstream first
    assert world.push("HEAD:bottle/shared").returncode == 0
    assert git("merge-base", "--is-ancestor", theirs, "refs/heads/bottle/shared", cwd=world.upstream)


def test_every_push_is_audited_without_the_secret(world):
    since = max((event["id"] for event in read_events(world.audit)), default=0)
    world.branch("bottle/audited")
    world.commit({"leak.txt": f"{AWS_KEY}\n"})
    world.push("HEAD:bottle/audited", "HEAD:main")
    git("reset", "--quiet", "--hard", "origin/main", cwd=world.clone)
    world.commit({"fine.txt": "fine\n"})
    world.push("HEAD:bottle/audited")
    events = read_events(world.audit, since_id=since)
    rows = [(e["source"], e["decision"], e["method"], e["path"], e["detail"].get("check")) for e in events]
    assert sorted(rows[:2]) == [  # one push, refused: a row per ref
        ("git", "blocked", "push", "refs/heads/bottle/audited", "secret"),
        ("git", "blocked", "push", "refs/heads/main", "protected"),
    ]
    assert rows[2:] == [("git", "allowed", "push", "refs/heads/bottle/audited", None)]
    leak = next(e for e in events if e["detail"].get("check") == "secret")
    assert leak["detail"]["findings"] == [
        {"detector": "AWS Access Key", "path": "leak.txt", "line": 1, "commit": leak["detail"]["new"]}]
    assert events[0]["detail"]["push"] == events[1]["detail"]["push"] != events[2]["detail"]["push"]
    stored = b"".join(path.read_bytes() for path in world.dir.glob("audit.sqlite*"))
    assert not any(secret.encode() in stored for secret in SECRETS)


def test_only_the_smart_protocol_at_the_one_path_is_served(world):
    base = world.gate.url.removesuffix("/repo.git")
    for path in ("/other.git/info/refs?service=git-upload-pack", "/repo.git/HEAD", "/repo.git/info/refs",
                 "/repo.git/objects/info/packs", "/repo.git/config", "/"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + path, timeout=TIMEOUT)
        assert info.value.code == 404, path
    with urllib.request.urlopen(world.gate.url + "/info/refs?service=git-upload-pack", timeout=TIMEOUT) as answer:
        assert answer.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_the_gate_repository_holds_no_upstream_url_and_its_hook_calls_back(world):
    repo = world.dir / "gate.git"
    config = (repo / "config").read_text()
    assert "remote" not in config and str(world.upstream) not in config and "extraheader" not in config.lower()
    assert sorted(path.name for path in (repo / "hooks").iterdir()) == ["pre-receive"]


def test_an_upstream_the_gate_cannot_fetch_at_start_ends_it_with_one_line(tmp_path):
    done = start_gate(tmp_path, {"bottle": "t", "upstream": str(tmp_path / "missing.git")})
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 2
    [line] = done.stdout.splitlines()
    assert line.startswith(f"bottle-gitgate: cannot fetch from upstream {tmp_path}/missing.git: ")


def test_the_hook_refuses_the_push_when_the_gate_does_not_answer(tmp_path):
    hook = tmp_path / "pre-receive"
    hook.write_text(gitgate.HOOK.format(python=sys.executable, socket=str(tmp_path / "gone.sock")))
    hook.chmod(0o755)
    done = subprocess.run([str(hook)], input=f"{'0' * 40} {'1' * 40} refs/heads/bottle/x\n", capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert done.stderr.startswith("bottle git gate: the gate did not answer (")
    assert done.stderr.endswith("nothing was sent upstream\n")


def test_the_gate_runs_as_the_top_level_package_of_the_sidecar_image(tmp_path, world):
    """In the image the package is bottle_sidecar: only relative imports, and the hook does not care."""
    shutil.copytree(Path(gitgate.__file__).parent, tmp_path / "lib" / "bottle_sidecar",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib")}
    gate = start_gate(tmp_path, {"bottle": "t", "upstream": str(world.upstream)}, "bottle_sidecar.gitgate", env,
                      credentials={})
    assert isinstance(gate, Gate), gate.stdout
    try:
        clone = tmp_path / "clone"
        git("clone", "--quiet", gate.url, str(clone), cwd=tmp_path)
        git("commit", "--quiet", "--allow-empty", "-m", "from the image's layout", cwd=clone)
        done = git("push", "origin", "HEAD:bottle/image-layout", cwd=clone, check=False)
        assert done.returncode == 0, done.stderr + "".join(gate.log)
        # The hook's socket lives in a private directory beside the credentials (the sidecar's tmpfs).
        [runtime] = (tmp_path / "secrets").glob("bottle-gitgate-*")
        assert runtime.stat().st_mode & 0o777 == 0o700 and (runtime / "hook.sock").stat().st_mode & 0o777 == 0o600
    finally:
        gate.stop()
    assert gate.process.returncode == 0
    assert not list((tmp_path / "secrets").glob("bottle-gitgate-*"))  # removed at exit


# The credential, in process: how it reaches git, and that it reaches nothing else.


class Recorder(BaseHTTPRequestHandler):
    """Answers 404 to everything, remembering each request's Authorization header."""

    def do_GET(self):
        self.server.seen.append(self.headers.get("Authorization"))
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_token_goes_to_upstream_in_a_basic_auth_header_only(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/org/repo.git"  # http: the config would refuse it
        config = Config("t", url, Rules(("refs/heads/bottle/*",), (), False, 50),
                        gitgate.Credential("token", "GITHUB_TOKEN"))
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        upstream = Upstream(config, {"GITHUB_TOKEN": TOKEN}, str(runtime))
        with pytest.raises(GitError) as info:
            upstream.head(git_env())
    finally:
        server.shutdown()
    assert server.seen[0] == "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert TOKEN not in str(info.value) and not list(runtime.iterdir())


def test_an_ssh_key_goes_to_ssh_as_a_private_file_never_in_argv(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(f'#!/bin/sh\nfor a; do echo "$a"; done > {tmp_path}/argv\n'
                              f'while [ $# -gt 0 ]; do [ "$1" = -i ] && stat -c %a "$2" > {tmp_path}/mode '
                              f'&& cp "$2" {tmp_path}/key-seen; shift; done\nexit 255\n')
    (fake / "ssh").chmod(0o755)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    config = Config("t", "git@git.example.com:org/repo.git", Rules((), (), False, 50),
                    gitgate.Credential("ssh_key", "DEPLOY_KEY"), known_hosts="git.example.com ssh-ed25519 AAAAC3")
    upstream = Upstream(config, {"DEPLOY_KEY": key}, str(runtime))
    with pytest.raises(GitError):
        upstream.head(git_env(PATH=f"{fake}:{os.environ['PATH']}"))
    argv = (tmp_path / "argv").read_text()
    assert f"-i\n{runtime}/key\n" in argv and "StrictHostKeyChecking=yes" in argv and "BEGIN" not in argv
    assert (tmp_path / "mode").read_text().strip() == "600"
    assert (tmp_path / "key-seen").read_text() == key + "\n"
    assert (runtime / "known_hosts").read_text() == "git.example.com ssh-ed25519 AAAAC3"


@pytest.mark.parametrize(("config", "complaint"), [
    ({"upstream": "https://user:secret@example.com/r.git"}, "must not hold a password or token"),
    ({"upstream": "http://example.com/r.git", "credential": {"kind": "token", "name": "T"}}, "needs an https://"),
    ({"upstream": "https://example.com/r.git", "credential": {"kind": "ssh_key", "name": "K"}},
     "needs an ssh upstream"),
    ({"upstream": "/srv/r.git", "credential": {"kind": "password", "name": "P"}}, "must be \"token\" or \"ssh_key\""),
    ({"upstream": "--upload-pack=evil"}, "'upstream' must be a git URL or path"),
    ({"upstream": "/srv/r.git", "push_refs": ["bottle/*"]}, "'push_refs' must be a list of ref patterns"),
    ({"upstream": "/srv/r.git", "max_push_mb": 0}, "'max_push_mb' must be a positive number"),
    ({"upstream": "/srv/r.git", "allow_forc": True}, "unknown field(s) allow_forc"),
])
def test_a_config_that_would_leak_or_misbehave_is_refused(tmp_path, config, complaint):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"bottle": "t", **config}))
    with pytest.raises(StartupError, match=re.escape(complaint)):
        load_config(str(path))


def test_a_config_takes_defaults(tmp_path):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"bottle": "t", "upstream": "git@github.com:org/repo.git",
                                "credential": {"kind": "ssh_key", "name": "K"}}))
    config = load_config(str(path))
    assert config.rules == Rules(("refs/heads/bottle/*",), (), False, 50)
    assert config.credential == gitgate.Credential("ssh_key", "K")
