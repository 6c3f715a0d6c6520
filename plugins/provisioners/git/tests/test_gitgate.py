"""The git gate as it runs in the sidecar: ``python -m bottle_gitgate_sidecar.gitgate`` in a
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

from bottle_gitgate_sidecar import gitgate, gitgate_check
from bottle_sidecar.audit import read_events
from bottle_gitgate_sidecar.gitgate import Config, StartupError, Upstream, git_env, load_config
from bottle_gitgate_sidecar.gitgate_check import GitError, Rules
from bottle_sidecar.secrets_scan import Scanner

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


def start_gate(directory: Path, config: dict, module: str = "bottle_gitgate_sidecar.gitgate", env: dict | None = None,
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
    gate = start_gate(directory, {"bottle": "gate-test", "upstream": str(upstream), "protected": ["refs/heads/main"],
                                  "push_refs": ["refs/heads/bottle/*", "refs/tags/bottle/*"],
                                  "fetch_refs": ["HEAD", "refs/tags/*"], "max_push_mb": 1})
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
            "refs/heads/feature is not a ref the agent may push (allowed: refs/heads/bottle/*, refs/tags/bottle/*)",
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
    message = refused(world.push("HEAD:bottle/leak"), "the push holds what looks like a secret",
                      f"{where} (commit {commit[:12]})", "take it out of every new commit")
    assert not any(secret in message for secret in SECRETS)
    assert world.upstream_refs() == before


def test_a_secret_in_a_commit_message_is_refused(world):
    world.branch("bottle/message")
    world.commit({"ok.txt": "ok\n"}, f"use {AWS_KEY} for the demo")
    commit = ref(world.clone, "HEAD")
    message = refused(world.push("HEAD:bottle/message"), f"AWS Access Key in the message (commit {commit[:12]})")
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
        {"detector": "AWS Access Key", "where": "leak.txt line 1", "object": leak["detail"]["new"], "kind": "commit"}]
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
    """In the image the gate's package and the kit are top-level packages under lib/, alone: the gate needs
    nothing else, and the hook does not care where it is."""
    import bottle_sidecar

    for package in (Path(gitgate.__file__).parent, Path(bottle_sidecar.__file__).parent):
        shutil.copytree(package, tmp_path / "lib" / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib")}
    gate = start_gate(tmp_path, {"bottle": "t", "upstream": str(world.upstream), "fetch_refs": ["HEAD"],
                                 "push_refs": ["refs/heads/bottle/*"]}, "bottle_gitgate_sidecar.gitgate", env,
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


# Everything a push carries is scanned, and names are checked: a token hidden
# anywhere but a file's added lines must not reach upstream either.

GITHUB_TOKEN = "ghp_" + "Gate7scan" * 4  # GitHub's token shape, not a documented example


def literal_object(world: World, kind: str, text: str) -> str:
    """Write *text* as a raw object of *kind* into the clone, as git would not: its id."""
    done = subprocess.run(["git", "hash-object", "-t", kind, "-w", "--stdin", "--literally"], cwd=world.clone,
                          env=CLIENT_ENV, input=text.encode(), capture_output=True, check=True)
    return done.stdout.decode().strip()


def crafted_commit(world: World, headers: str, message: str = "crafted") -> str:
    """A commit on upstream's main with extra *headers* (raw lines) after the committer."""
    parent = ref(world.clone, "origin/main")
    tree = ref(world.clone, "origin/main^{tree}")
    identity = "Agent <agent@example.com> 1700000000 +0000"
    return literal_object(world, "commit", f"tree {tree}\nparent {parent}\nauthor {identity}\n"
                                           f"committer {identity}\n{headers}\n{message}\n")


def gate_lines(stderr: str) -> str:
    """What the gate said, without git's own report of the refs (which names them as the agent did)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("remote:"))


def refused_secret(world: World, refspecs: tuple[str, ...], *fragments: str) -> str:
    """The push is refused for a secret, which neither the gate's answer nor the audit log repeats;
    upstream is as it was."""
    before = world.upstream_refs()
    message = refused(world.push(*refspecs), "what looks like a secret", *fragments)
    assert GITHUB_TOKEN not in gate_lines(message)
    assert world.upstream_refs() == before
    stored = b"".join(path.read_bytes() for path in world.dir.glob("audit.sqlite*"))
    assert GITHUB_TOKEN.encode() not in stored
    return message


def test_a_secret_in_a_file_name_is_refused_and_the_name_is_cut_where_it_starts(world):
    world.branch("bottle/named")
    commit = world.commit({f"notes/{GITHUB_TOKEN}.txt": "nothing to see\n"})
    refused_secret(world, ("HEAD:bottle/named",), f"GitHub Token in a file or directory name (commit {commit[:12]})")
    world.branch("bottle/named-too")
    commit = world.commit({f"{GITHUB_TOKEN}.ini": f"key = {AWS_KEY}\n"})
    refused_secret(world, ("HEAD:bottle/named-too",),
                   "AWS Access Key in [bottle:redacted:github-token:", f"line 1 (commit {commit[:12]})")


def test_a_secret_in_a_name_without_new_content_is_refused(world):
    """A rename keeps the blob, an empty directory (git's own commands never make one) has none:
    only the name is new."""
    world.branch("bottle/renamed")
    git("mv", "README.md", f"{GITHUB_TOKEN}.md", cwd=world.clone)
    git("commit", "--quiet", "-m", "rename", cwd=world.clone)
    commit = ref(world.clone, "HEAD")
    refused_secret(world, ("HEAD:bottle/renamed",), f"GitHub Token in a file or directory name (commit {commit[:12]})")
    listing = git("ls-tree", "origin/main", cwd=world.clone).stdout
    empty = literal_object(world, "tree", "")
    tree = subprocess.run(["git", "mktree"], cwd=world.clone, env=CLIENT_ENV, capture_output=True, check=True,
                          input=f"{listing}040000 tree {empty}\tdocs-{GITHUB_TOKEN}\n".encode()).stdout.decode().strip()
    commit = git("commit-tree", tree, "-p", "origin/main", "-m", "an empty directory", cwd=world.clone).stdout.strip()
    refused_secret(world, (f"{commit}:refs/heads/bottle/empty-dir",),
                   f"GitHub Token in a file or directory name (commit {commit[:12]})")


def test_a_tag_at_a_tree_has_its_names_scanned(world):
    world.branch("bottle/tree-names")
    world.commit({f"{GITHUB_TOKEN}/notes.txt": "fine\n"})
    tree = ref(world.clone, "HEAD^{tree}")
    refused_secret(world, (f"{tree}:refs/tags/bottle/tree-names",),
                   f"GitHub Token in a file or directory name (tree {tree[:12]})")


@pytest.mark.parametrize("who", ["AUTHOR", "COMMITTER"])
def test_a_secret_in_an_identity_is_refused(world, who):
    world.branch("bottle/identity")
    git("-c", f"user.email={GITHUB_TOKEN}@example.com", "commit", "--quiet", "--allow-empty", "-m", "who am I",
        cwd=world.clone)  # user.email: the identity where CLIENT_ENV does not set it
    env = {**CLIENT_ENV, f"GIT_{who}_EMAIL": f"{GITHUB_TOKEN}@example.com"}
    git("reset", "--quiet", "--hard", "origin/main", cwd=world.clone)
    subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-m", "who am I"], cwd=world.clone, env=env,
                   check=True, capture_output=True)
    commit = ref(world.clone, "HEAD")
    refused_secret(world, ("HEAD:bottle/identity",), f"GitHub Token in the {who.lower()} (commit {commit[:12]})")


@pytest.mark.parametrize(("headers", "where"), [
    (f"x-smuggled {GITHUB_TOKEN}", "an extra header"),
    (f"{GITHUB_TOKEN} named-by-the-secret", "an extra header"),
    (f"gpgsig -----BEGIN PGP SIGNATURE-----\n {GITHUB_TOKEN}\n -----END PGP SIGNATURE-----", "the gpgsig header"),
], ids=["value", "name", "signature"])
def test_a_secret_in_a_commit_header_is_refused(world, headers, where):
    commit = crafted_commit(world, headers)
    refused_secret(world, (f"{commit}:refs/heads/bottle/header",), f"GitHub Token in {where} (commit {commit[:12]})")


def test_a_secret_in_an_annotated_tag_is_refused(world):
    world.branch("bottle/tagged")
    world.commit({"tagged.txt": "fine\n"})
    git("tag", "--force", "-a", "-m", f"release notes: {GITHUB_TOKEN}", "bottle/v9", cwd=world.clone)
    tag = ref(world.clone, "refs/tags/bottle/v9")
    refused_secret(world, ("refs/tags/bottle/v9",), f"GitHub Token in the message (tag {tag[:12]})")
    env = {**CLIENT_ENV, "GIT_COMMITTER_NAME": GITHUB_TOKEN}  # a tag's tagger is the committer's identity
    subprocess.run(["git", "tag", "--force", "-a", "-m", "clean", "bottle/v9"], cwd=world.clone, env=env, check=True)
    tag = ref(world.clone, "refs/tags/bottle/v9")
    refused_secret(world, ("refs/tags/bottle/v9",), f"GitHub Token in the tagger (tag {tag[:12]})")


@pytest.mark.parametrize("target", ["refs/tags/bottle/blob", "refs/heads/bottle/blob"])
def test_a_ref_straight_at_a_blob_has_the_blob_scanned_whole(world, target):
    blob = literal_object(world, "blob", f"token = {GITHUB_TOKEN}\n")
    refused_secret(world, (f"{blob}:{target}",), f"GitHub Token in the content (blob {blob[:12]})")


def test_a_tag_at_a_tree_has_its_blobs_scanned_whole(world):
    world.branch("bottle/treed")
    world.commit({"conf/token.txt": f"{GITHUB_TOKEN}\n"})
    blob, tree = ref(world.clone, "HEAD:conf/token.txt"), ref(world.clone, "HEAD^{tree}")
    refused_secret(world, (f"{tree}:refs/tags/bottle/tree",), f"GitHub Token in the content (blob {blob[:12]})")


@pytest.mark.parametrize("name, detector", [(GITHUB_TOKEN, "GitHub Token"), ("x" + AWS_KEY, "AWS Access Key")],
                         ids=["as-is", "glued-after-a-letter"])
def test_a_secret_in_a_ref_name_is_refused_and_replaced_in_the_answer_and_the_audit(world, name, detector):
    since = max((event["id"] for event in read_events(world.audit)), default=0)
    world.branch("bottle/fine")
    message = refused(world.push(f"HEAD:refs/heads/bottle/{name}"),
                      f": refused: the ref name holds what looks like a secret: {detector}")
    shown = re.search(r"remote: (refs/heads/bottle/\S*): refused", message)[1]
    assert re.fullmatch(r"refs/heads/bottle/x?\[bottle:redacted:[a-z-]+:\d+\]", shown), shown
    [event] = read_events(world.audit, since_id=since)
    assert (event["path"], event["detail"]["check"]) == (shown, "secret")
    stored = b"".join(path.read_bytes() for path in world.dir.glob("audit.sqlite*"))
    assert name.encode() not in stored and name[-20:] not in gate_lines(message)


@pytest.mark.parametrize(("char", "named"), [
    ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"), ("\u2067", "U+2067 RIGHT-TO-LEFT ISOLATE"),
    ("\u009b", "U+009B (a control character)"), ("\u200b", "U+200B ZERO WIDTH SPACE"),
])
def test_a_ref_name_with_a_control_or_bidi_character_is_refused_and_shown_escaped(world, char, named):
    before = world.upstream_refs()
    world.branch("bottle/fine")
    message = refused(world.push(f"HEAD:refs/heads/bottle/x{char}y"), f"the ref name holds {named}",
                      f"refs/heads/bottle/x{ascii(char)[1:-1]}y: refused")
    assert char not in gate_lines(message)
    assert world.upstream_refs() == before


def test_a_push_of_too_many_refs_is_refused_with_one_audit_row(world):
    before = world.upstream_refs()
    since = max((event["id"] for event in read_events(world.audit)), default=0)
    world.branch("bottle/many")
    world.commit({"many.txt": "many\n"})
    refused(world.push(*(f"HEAD:bottle/many-{n}" for n in range(21))),
            "the push updates 21 refs, more than the 20 a push may update", "instead: push at most 20 refs")
    assert world.upstream_refs() == before
    [event] = read_events(world.audit, since_id=since)
    assert (event["decision"], event["path"], event["detail"]["refs"]) == ("blocked", None, 21)
    assert world.push(*(f"HEAD:bottle/many-{n}" for n in range(20))).returncode == 0


# The checks themselves, without git.


@pytest.mark.parametrize(("text", "found"), [
    ("refs/heads/bottle/x\x1by", "U+001B (a control character)"),
    ("refs/heads/bottle/\u0085", "U+0085 (a control character)"),
    ("refs/heads/bottle/\u2028", "U+2028 LINE SEPARATOR"),
    ("refs/heads/bottle/\u061c", "U+061C ARABIC LETTER MARK"),
    ("refs/heads/bottle/" + b"\xff".decode("utf-8", "surrogateescape"), "the byte 0xFF, which is not UTF-8"),
    ("refs/heads/bottle/caf\u00e9-\u65e5\u672c", None),
])
def test_unsafe_characters_are_named(text, found):
    assert gitgate_check.unsafe_character(text) == found


def test_shown_names_are_escaped_and_have_every_secret_replaced():
    scanner = Scanner()
    assert gitgate_check.shown(scanner, "refs/heads/bottle/a\x1b[2J\u202eb") == "refs/heads/bottle/a\\x1b[2J\\u202eb"
    marker = r"\[bottle:redacted:github-token:\d+\]"
    assert re.fullmatch(rf"bottle/{marker}/\\x1b", gitgate_check.shown(scanner, f"bottle/{GITHUB_TOKEN}/\x1b"))
    # every secret, wherever it starts: the detector that comes first need not find the first secret
    google = "AIza" + "G" * 35
    both = gitgate_check.shown(scanner, f"bottle/{google}/{GITHUB_TOKEN}")
    assert re.fullmatch(rf"bottle/\[bottle:redacted:google-api-key:\d+\]/{marker}", both), both
    assert gitgate_check.shown(scanner, "plain/name.txt line 3") == "plain/name.txt line 3"


@pytest.mark.parametrize(("count", "refused_"), [(1, False), (5, False), (6, True)])
def test_the_number_of_refs_is_capped(count, refused_):
    problem = gitgate_check.count_problem(Rules(("refs/*",), (), False, 50, 5), count)
    assert (problem is not None) == refused_
    if refused_:
        assert problem.check == "refs" and problem.detail == {"refs": count}


def test_a_ref_name_is_refused_for_unsafe_characters_before_secrets():
    scanner = Scanner()
    update = lambda name: gitgate_check.Update("0" * 40, "1" * 40, name)  # noqa: E731
    assert gitgate_check.name_problem(scanner, update("refs/heads/bottle/fine")) is None
    assert gitgate_check.name_problem(scanner, update(f"refs/heads/\u202e{GITHUB_TOKEN}")).check == "ref-name"
    problem = gitgate_check.name_problem(scanner, update(f"refs/heads/{GITHUB_TOKEN}"))
    assert problem.check == "secret" and GITHUB_TOKEN not in problem.why + str(problem.detail)


def test_tree_names_lose_no_name_whatever_bytes_the_binary_ids_hold():
    tricky_id = b" \0\n" + b"\0" * 17  # 20 bytes: a space, a NUL and a newline among them
    looks_like_an_entry = b"1" * 19 + b" "  # digits and a space, as an entry begins: the next name stays whole
    tree = (b"100644 a.txt\0" + tricky_id + b"40000 dir name\0" + looks_like_an_entry + b"100644 secret.txt\0"
            + bytes(range(20)) + b"160000 mod\0" + tricky_id)
    names = gitgate_check.tree_names(tree).split(b"\n")
    assert names[:2] == [b"a.txt", b"dir name"] and names[-1] == b"mod"
    assert names[2].endswith(b" secret.txt")


def test_object_findings_name_the_header_or_the_message_never_the_secret():
    identity = "A <a@example.com> 1 +0000"
    commit = (f"tree {'1' * 40}\nauthor {GITHUB_TOKEN} {identity}\ncommitter {identity}\n"
              f"mergetag object {'2' * 40}\n type commit\n tag {GITHUB_TOKEN}\n"
              f"{GITHUB_TOKEN} x\n\nsubject\n\nbody {GITHUB_TOKEN}\n").encode()
    tag = f"object {'3' * 40}\ntype commit\ntag {GITHUB_TOKEN}\ntagger {identity}\n\nclean\n".encode()
    tree = b"100644 " + GITHUB_TOKEN.encode() + b"\0" + b"\1" * 20
    findings = gitgate_check.object_findings(Scanner(), [("commit", "c" * 40, commit), ("tag", "d" * 40, tag),
                                                         ("tree", "e" * 40, tree)])
    assert [str(f) for f in findings] == [
        f"GitHub Token in the author (commit {'c' * 12})",
        f"GitHub Token in the mergetag header (commit {'c' * 12})",
        f"GitHub Token in an extra header (commit {'c' * 12})",
        f"GitHub Token in the message (commit {'c' * 12})",
        f"GitHub Token in the tag name (tag {'d' * 12})",
        f"GitHub Token in a file or directory name (tree {'e' * 12})",
    ]
    assert gitgate_check.object_findings(Scanner(), [("commit", "c" * 40, commit.replace(GITHUB_TOKEN.encode(),
                                                                                        b"clean"))]) == []


# Fetching: the gate holds only the refs the bottle may fetch or push, and the objects they reach.


@pytest.fixture
def others(tmp_path) -> Path:
    """An upstream where, besides main and a tag, another bottle and a person have branches of their own."""
    upstream, seed = tmp_path / "others.git", tmp_path / "others-seed"
    git("init", "--quiet", "--bare", "-b", "main", str(upstream), cwd=tmp_path)
    git("init", "--quiet", "-b", "main", str(seed), cwd=tmp_path)
    git("commit", "--quiet", "--allow-empty", "-m", "start", cwd=seed)
    git("tag", "-a", "-m", "the release", "v1", cwd=seed)  # a tag object: not in main's history
    for branch in ("bottle/other-bottle", "unrelated"):
        git("checkout", "--quiet", "-b", branch, "main", cwd=seed)
        (seed / f"{branch.replace('/', '-')}.txt").write_text(f"{branch}'s own work\n")
        git("add", ".", cwd=seed)
        git("commit", "--quiet", "-m", f"{branch}'s work", cwd=seed)
    git("push", "--quiet", str(upstream), "main", "v1", "bottle/other-bottle", "unrelated", cwd=seed)
    return upstream


def test_a_gate_serves_only_the_refs_the_bottle_may_fetch_or_push(tmp_path, others):
    gate = start_gate(tmp_path, {"bottle": "mine", "upstream": str(others), "fetch_refs": ["HEAD"],
                                 "push_refs": ["refs/heads/bottle/mine", "refs/heads/bottle/mine/*"]})
    assert isinstance(gate, Gate), gate.stdout
    try:
        clone = tmp_path / "clone"
        git("clone", "--quiet", gate.url, str(clone), cwd=tmp_path)
        git("commit", "--quiet", "--allow-empty", "-m", "mine", cwd=clone)
        assert git("push", "origin", "HEAD:bottle/mine", cwd=clone, check=False).returncode == 0
        listed = git("ls-remote", "origin", cwd=clone).stdout
        assert sorted(line.split("\t")[1] for line in listed.splitlines()) == [
            "HEAD", "refs/heads/bottle/mine", "refs/heads/main"]
        for name in ("bottle/other-bottle", "unrelated", "v1"):
            done = git("fetch", "origin", name, cwd=clone, check=False)
            assert done.returncode != 0 and "couldn't find remote ref" in done.stderr, done.stderr
            # Not by id either, whichever protocol: the gate's repository does not hold it.
            oid = ref(others, name)
            for version in ("2", "0"):
                done = git("-c", f"protocol.version={version}", "fetch", "origin", oid, cwd=clone, check=False)
                assert done.returncode != 0, (name, version, done.stderr)
            assert subprocess.run(["git", "cat-file", "-e", oid], cwd=tmp_path / "gate.git").returncode != 0
        # The mirror follows upstream: main moves, the bottle's branch goes, and nothing else comes in.
        seed = tmp_path / "seed"
        git("clone", "--quiet", str(others), str(seed), cwd=tmp_path)
        git("commit", "--quiet", "--allow-empty", "-m", "later", cwd=seed)
        git("push", "--quiet", "origin", "HEAD:main", ":bottle/mine", "+HEAD:bottle/other-bottle", cwd=seed)
        git("fetch", "--quiet", "--prune", "origin", cwd=clone)
        assert ref(clone, "origin/main") == ref(seed, "HEAD")
        assert ref(clone, "origin/bottle/mine") is None
        assert git("ls-remote", "origin", cwd=clone).stdout.count("\t") == 2  # HEAD and main
    finally:
        gate.stop()



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
            upstream.listing(git_env())
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
        upstream.listing(git_env(PATH=f"{fake}:{os.environ['PATH']}"))
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
    ({"upstream": "/srv/r.git", "push_refs": ["HEAD"]}, "'push_refs' must be a list of ref patterns"),
    ({"upstream": "/srv/r.git", "fetch_refs": ["main"]}, "'fetch_refs' must be a list of ref patterns"),
    ({"upstream": "/srv/r.git", "max_push_mb": 0}, "'max_push_mb' must be a positive number"),
    ({"upstream": "/srv/r.git", "max_push_refs": 2.5}, "'max_push_refs' must be a positive whole number"),
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
    assert config.rules == Rules((), (), False, 50, 20)  # the host names the refs; without them, none
    assert (config.fetch_refs, config.credential) == ((), gitgate.Credential("ssh_key", "K"))
