"""The git gate: the agent's only git remote, and the only holder of upstream's credential.

Run in the sidecar as::

    python -m bottle_gitgate_sidecar.gitgate --listen-host 0.0.0.0 --listen-port 8418 \\
        --repo /var/lib/bottle/gate.git --config FILE --credentials FILE --audit FILE

At start it makes (or reuses) the bare repository ``--repo``, mirrors into it
upstream's refs that the bottle may fetch (``fetch_refs``) or push
(``push_refs``), and serves it to the agent at ``http://HOST:PORT/repo.git``
with git's smart HTTP protocol: the real ``git http-backend`` as a CGI behind a
small threaded HTTP server. Nothing else is served, not even git's "dumb"
protocol. It prints ``bottle-gitgate: listening on HOST:PORT`` once ready; an
upstream it cannot fetch from at start ends it with exit code 2 and one line
saying why.

Only those refs, and only the objects they reach, ever enter the gate's
repository: git's protocol v2 serves any object the repository holds to
whoever names its id, hidden ref or not, so another bottle's branch must not be
in it at all. A fetch or clone first brings the mirror up to date with upstream
(one ``ls-remote``, and a fetch of just the refs that moved), so that the agent
can rebase onto what others pushed. A push runs the repository's
pre-receive hook, a tiny script written at each start that hands the ref
updates to this process over a Unix socket. The gate checks them
(``gitgate_check``: how many refs, their names, allowed refs, no rewritten
history, size, secrets in anything the push adds) and, if every ref passes,
pushes them upstream with the credential *from inside the hook*. Only when
upstream took them does the hook say yes and git move the gate's refs; if
anything is refused, or upstream says no or cannot be reached, git drops the
quarantined objects and the agent's push fails with the reason. So the gate
never holds what upstream does not, and the agent's commits stay in its clone.
Every ref of every push is a row in the audit log (source "git", decision
"allowed" or "blocked"), named as the gate shows it: unsafe characters
escaped, cut where a secret starts; a push of too many refs is one row.

The config (JSON, written by the host)::

    {"bottle": "SLUG", "upstream": "git@github.com:org/repo.git",
     "push_refs": ["refs/heads/bottle/SLUG", "refs/heads/bottle/SLUG/*"],
     "fetch_refs": ["HEAD", "refs/heads/feature"], "protected": ["refs/heads/main"],
     "allow_force": false, "max_push_mb": 50, "max_push_refs": 20,
     "credential": {"kind": "token" | "ssh_key", "name": "NAME", "username": "x-access-token"} | null,
     "known_hosts": "github.com ssh-ed25519 AAAA..."}

``upstream`` is an https, ssh (URL or ``user@host:path``) or local path;
ref patterns are fnmatch globs over full ref names, and ``HEAD`` in
``fetch_refs`` is upstream's default branch. ``push_refs`` and ``fetch_refs``
default to none: the host names them (the profile's defaults are the bottle's
own branch, and the branch it starts from). A credential's value is
``NAME`` in the credentials file (``{name: value}``, mode 0600, as for the
egress proxy): a token goes in an ``Authorization: Basic`` header (user
``username``), an SSH private key into a file in a private directory beside
the credentials file (the sidecar's tmpfs), removed at exit. Neither ever
appears in argv, a log line, the audit log or the repository's config.
``known_hosts`` pins upstream's SSH host key; without it the key seen at start
is kept for the rest of the run. ``max_push_mb`` counts MiB. ``relay``, with a
local ``upstream``, is the Unix socket on which the host serves that repository
(``bottle_git.upstream_relay``): the sidecar has no access to it, and the gate's git
reaches it through ``upstream_pipe``.

Stdlib and its sibling modules only: in the sidecar image this is ``bottle_gitgate_sidecar.gitgate``.
"""

import argparse
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from bottle_sidecar.audit import AuditLog
from bottle_gitgate_sidecar.gitgate_check import (
    MAX_PUSH_REFS, MiB, GitError, Problem, Rules, Update, check_push, count_problem, git, last_complaint,
    parse_updates, shown,
)
from bottle_sidecar.secrets_scan import Scanner
from bottle_sidecar.startup import StartupError, load_credentials

URL_PATH = "/repo.git"  # the one path served, whatever the repository's directory is called
SERVICES = ("service=git-upload-pack", "service=git-receive-pack")
# git itself refuses a pack this many times max_push_mb before the hook runs,
# so an agent cannot fill the sidecar's disk with one enormous push.
HARD_LIMIT_FACTOR = 2
CREATED_FILE = "bottle-created-refs.json"  # in the repository: the refs pushes through the gate created
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"  # never ext:: or fd::, whatever the URL says
CHUNK = 64 * 1024
#: Seconds the gate goes on reading a push's body after git refused it (over the hard limit, say), so that the
#: client, still sending, reads the refusal instead of a broken pipe; at most the hard limit's bytes.
DRAIN_SECONDS = 30
REFUSED = "bottle git gate: push refused; nothing reached upstream and the gate kept nothing."
HOOK = """#!{python} -IS
# The git gate's pre-receive hook, written by the gate at each start: it hands
# the pushed ref updates to the gate, which checks them and forwards upstream
# what passes, and exits as the gate says (non-zero refuses the whole push).
import json, os, socket, sys
updates = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")  # a ref name need not be UTF-8
request = {{"cwd": os.getcwd(), "quarantine": os.environ.get("GIT_QUARANTINE_PATH", ""), "updates": updates}}
try:
    with socket.socket(socket.AF_UNIX) as gate:
        gate.connect({socket!r})
        gate.sendall(json.dumps(request).encode() + b"\\n")
        answer = json.loads(gate.makefile("rb").readline())
except (OSError, ValueError) as err:
    message = "bottle git gate: the gate did not answer (%s); nothing was sent upstream\\n" % err
    answer = {{"code": 1, "message": message}}
sys.stderr.write(answer["message"])
sys.exit(answer["code"])
"""




@dataclass(frozen=True)
class Credential:
    kind: str  # "token" or "ssh_key"
    name: str  # its key in the credentials file
    username: str = "x-access-token"  # for a token: the user of HTTP basic auth (GitHub ignores it)


@dataclass(frozen=True)
class Config:
    bottle: str
    upstream: str
    rules: Rules
    credential: Credential | None = None
    known_hosts: str | None = None
    fetch_refs: tuple[str, ...] = ()  # besides push_refs; "HEAD": upstream's default branch
    relay: str | None = None  # the socket a local upstream is served on


_FIELDS = {"bottle", "upstream", "push_refs", "fetch_refs", "protected", "allow_force", "max_push_mb",
           "max_push_refs", "credential", "known_hosts", "relay"}


def load_config(path: str) -> Config:
    """The gate's config file, checked field by field; StartupError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as err:
        raise StartupError(f"cannot read the gate's config {path}: {err}") from None
    try:
        return _config(data)
    except ValueError as err:
        raise StartupError(f"gate config {path}: {err}") from None


def _config(data: object) -> Config:
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    bottle, upstream = data.get("bottle"), data.get("upstream")
    if not isinstance(bottle, str) or not bottle:
        raise ValueError("'bottle' must be the bottle's slug")
    if not isinstance(upstream, str) or not upstream.strip() or upstream.startswith("-") or not upstream.isprintable():
        raise ValueError("'upstream' must be a git URL or path")
    patterns = {name: data.get(name, []) for name in ("push_refs", "fetch_refs", "protected")}
    for name, value in patterns.items():
        if not isinstance(value, list) or not all(
            isinstance(p, str) and (p.startswith("refs/") or (name, p) == ("fetch_refs", "HEAD")) for p in value
        ):
            raise ValueError(f"'{name}' must be a list of ref patterns such as refs/heads/bottle/*")
    allow_force, max_push_mb = data.get("allow_force", False), data.get("max_push_mb", 50)
    max_push_refs = data.get("max_push_refs", MAX_PUSH_REFS)
    if not isinstance(allow_force, bool):
        raise ValueError("'allow_force' must be true or false")
    if isinstance(max_push_mb, bool) or not isinstance(max_push_mb, (int, float)) or max_push_mb <= 0:
        raise ValueError("'max_push_mb' must be a positive number")
    if isinstance(max_push_refs, bool) or not isinstance(max_push_refs, int) or max_push_refs <= 0:
        raise ValueError("'max_push_refs' must be a positive whole number")
    known_hosts = data.get("known_hosts")
    if known_hosts is not None and not isinstance(known_hosts, str):
        raise ValueError("'known_hosts' must be the text of a known_hosts file")
    relay = data.get("relay")
    if relay is not None and (not isinstance(relay, str) or not relay.startswith("/") or "://" in upstream
                              or is_ssh(upstream)):
        raise ValueError("'relay' must be the path of the Unix socket a local upstream is served on")
    credential = _credential(data.get("credential"), upstream)
    rules = Rules(tuple(patterns["push_refs"]), tuple(patterns["protected"]), allow_force, max_push_mb, max_push_refs)
    return Config(bottle, upstream, rules, credential, known_hosts, tuple(patterns["fetch_refs"]), relay)


def _credential(entry: object, upstream: str) -> Credential | None:
    if "://" in upstream and urlsplit(upstream).password is not None:
        raise ValueError("'upstream' must not hold a password or token: name it in 'credential'")
    if entry is None:
        return None
    if not isinstance(entry, dict) or not {"kind", "name"} <= set(entry) <= {"kind", "name", "username"}:
        raise ValueError("'credential' must be null or an object with kind, name and optionally username")
    credential = Credential(**entry)
    if not all(isinstance(value, str) and value for value in credential.__dict__.values()):
        raise ValueError("'credential' fields must be non-empty strings")
    if credential.kind not in ("token", "ssh_key"):
        raise ValueError("'credential.kind' must be \"token\" or \"ssh_key\"")
    if credential.kind == "token" and not upstream.lower().startswith("https://"):
        raise ValueError("a token credential needs an https:// upstream (it would go in clear otherwise)")
    if credential.kind == "ssh_key" and not is_ssh(upstream):
        raise ValueError("an ssh_key credential needs an ssh upstream (ssh://... or user@host:path)")
    return credential


def is_ssh(url: str) -> bool:
    """ssh://... or git's scp-like user@host:path (a colon before any slash)."""
    if "://" in url:
        return url.split("://", 1)[0].lower() == "ssh"
    return ":" in url.split("/", 1)[0]


def git_env(**more: str) -> dict[str, str]:
    """This process's environment for git, minus any GIT_* it came with and any config
    but the repository's: the gate's git must not follow a user's or the system's settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    # No replace refs either: a refs/replace/* ref would make the checks read other objects than upstream gets.
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_NO_REPLACE_OBJECTS="1", **more)
    return env


def _config_env(settings: list[tuple[str, str]]) -> dict[str, str]:
    """git config given through the environment, where neither argv nor a config file shows it."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


class Upstream:
    """The real remote, and the environment that lets git reach it with the credential."""

    def __init__(self, config: Config, credentials: dict[str, str], runtime_dir: str):
        self.url = config.upstream
        self._secrets: list[str] = []
        settings = [("credential.helper", ""), ("http.lowSpeedLimit", "1000"), ("http.lowSpeedTime", "60")]
        extra = {"GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS}
        credential = config.credential
        if credential is not None:
            value = credentials.get(credential.name)
            if not value:
                raise StartupError(f"no value for the credential {credential.name} in the credentials file")
            if credential.kind == "token":
                basic = base64.b64encode(f"{credential.username}:{value}".encode()).decode()
                settings.append(("http.extraHeader", f"Authorization: Basic {basic}"))
                self._secrets += [value, basic]
            else:
                extra["GIT_SSH_COMMAND"] = self._ssh_command(value, config.known_hosts, runtime_dir)
                self._secrets.append(value)
        self._extra = {**extra, **_config_env(settings)}
        # A local upstream the host serves: git's upload-pack and receive-pack are the pipe to it.
        pipe = config.relay and shlex.join(
            [sys.executable, "-IS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream_pipe.py"),
             config.relay])
        self._upload = [f"--upload-pack={pipe} upload-pack"] if pipe else []
        self._receive = [f"--receive-pack={pipe} receive-pack"] if pipe else []

    @staticmethod
    def _ssh_command(key: str, known_hosts: str | None, runtime_dir: str) -> str:
        if shutil.which("ssh") is None:
            raise StartupError("an ssh_key credential needs ssh, which is not installed here (openssh-client)")
        key_file, hosts_file = os.path.join(runtime_dir, "key"), os.path.join(runtime_dir, "known_hosts")
        for path, text in ((key_file, key.strip() + "\n"), (hosts_file, known_hosts or "")):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(text)
        checking = "yes" if known_hosts else "accept-new"
        return shlex.join(["ssh", "-F", os.devnull, "-i", key_file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                           "-o", f"UserKnownHostsFile={hosts_file}", "-o", f"StrictHostKeyChecking={checking}",
                           "-o", "ConnectTimeout=30"])

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, **self._extra}

    def redact(self, text: str) -> str:
        """*text* (git's words about upstream) without the credential, should git ever repeat it."""
        for secret in self._secrets:
            text = text.replace(secret, "[credential]")
        return text

    def listing(self, env: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """Upstream's default branch (None for an empty upstream) and its refs, ``{name: id}``; GitError
        if it cannot be reached. A HEAD that is missing or dangling falls back to main or master."""
        try:
            out = git(self.env(env), "ls-remote", "--symref", *self._upload, "--", self.url)
        except GitError as err:
            raise GitError(self.redact(str(err))) from None
        head, refs = None, {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            if line.startswith("ref: ") and line.endswith("\tHEAD"):
                head = line[5:-5]
            else:
                oid, _, name = line.partition("\t")
                if name != "HEAD" and not name.endswith("^{}"):
                    refs[name] = oid
        if head not in refs:
            head = next((ref for ref in ("refs/heads/main", "refs/heads/master") if ref in refs), None)
        return head, refs

    def fetch(self, env: dict[str, str], refs: list[str]) -> None:
        """Fetch *refs* of upstream into the same refs of the gate (env: its repository's), and no
        tag or other ref along with them; GitError if it cannot."""
        refspecs = "".join(f"+{ref}:{ref}\n" for ref in refs)
        try:
            git(self.env(env), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *self._upload, "--stdin",
                "--", self.url, input=refspecs.encode("utf-8", "surrogateescape"))
        except GitError as err:
            raise GitError(self.redact(str(err))) from None

    def push(self, env: dict[str, str], updates: list[Update]) -> str | None:
        """Push *updates* upstream from the quarantine (env); None when upstream took them all, else why not.

        Each ref is leased at the value the gate saw, so a ref someone else moved
        upstream meanwhile is refused rather than overwritten; ``--atomic`` makes
        a push of several refs land whole or not at all.
        """
        args = ["push", "--no-verify", *self._receive] + (["--atomic"] if len(updates) > 1 else [])
        args += [f"--force-with-lease={u.ref}:{'' if u.creates else u.old}" for u in updates]
        args += ["--", self.url] + [f":{u.ref}" if u.deletes else f"{u.new}:{u.ref}" for u in updates]
        done = subprocess.run(["git", *args], env=self.env(env), capture_output=True)
        if done.returncode == 0:
            return None
        lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines()]
        said = [line for line in lines if line and not line.startswith(("hint:", "To "))][:20]
        return self.redact("; ".join(said) or last_complaint(done.stderr) or f"git push exited {done.returncode}")


class Gate:
    """The bare repository, its upstream and the decisions on pushes to it.

    Pushes are taken one at a time (``repo_lock``, held by the HTTP layer for a
    whole receive-pack request), and a fetch from upstream waits for them: it
    could otherwise move a ref between the hook's yes and git's ref update.
    """

    def __init__(self, repo: str, config: Config, upstream: Upstream, audit: AuditLog):
        self.repo = os.path.abspath(repo)
        self.config = config
        self.upstream = upstream
        self.audit = audit
        self.scanner = Scanner()
        self.repo_lock = threading.Lock()
        self.env = git_env(GIT_DIR=self.repo)
        self._created_file = os.path.join(self.repo, CREATED_FILE)

    @property
    def hard_limit(self) -> int:
        return int(self.config.rules.max_push_mb * MiB * HARD_LIMIT_FACTOR)

    def prepare(self, hook_socket: str) -> None:
        """Make the bare repository (no template, so no sample hooks), set what the
        gate needs and install the pre-receive hook that calls back on *hook_socket*."""
        git(git_env(), "init", "--quiet", "--bare", "--template=", self.repo)
        # unpackLimit 1: a push stays the pack it came as (git would otherwise
        # recompress a small push into loose objects), and forwarding it
        # upstream copies its objects as they are, without recompressing them.
        for key, value in (("http.receivepack", "true"), ("http.uploadpack", "true"),
                           ("receive.fsckObjects", "true"), ("receive.unpackLimit", "1"),
                           ("receive.maxInputSize", str(self.hard_limit))):
            git(self.env, "config", key, value)
        hooks = os.path.join(self.repo, "hooks")
        os.makedirs(hooks, exist_ok=True)
        path = os.path.join(hooks, "pre-receive")
        with open(path, "w") as file:
            file.write(HOOK.format(python=sys.executable, socket=hook_socket))
        os.chmod(path, 0o755)

    def mirror(self) -> tuple[str | None, list[str], int]:
        """Make the gate's refs exactly upstream's refs that match ``fetch_refs`` or ``push_refs``:
        fetch those that moved, drop those gone; upstream's default branch, the refs mirrored, and
        how many refs upstream has."""
        head, refs = self.upstream.listing(self.env)
        patterns = [head if pattern == "HEAD" else pattern for pattern in self.config.fetch_refs
                    if pattern != "HEAD" or head] + list(self.config.rules.push_refs)
        wanted = {name: oid for name, oid in refs.items() if any(fnmatchcase(name, p) for p in patterns)}
        listed = git(self.env, "for-each-ref", "--format=%(objectname) %(refname)").decode("utf-8", "surrogateescape")
        have = {name: oid for oid, name in (line.split(" ", 1) for line in listed.splitlines())}
        moved = [name for name, oid in wanted.items() if have.get(name) != oid]
        if moved:
            self.upstream.fetch(self.env, moved)
        gone = "".join(f"delete {name}\n" for name in have if name not in wanted)
        if gone:
            git(self.env, "update-ref", "--stdin", input=gone.encode("utf-8", "surrogateescape"))
        return head, sorted(wanted), len(refs)

    def seed(self) -> str:
        """Mirror upstream and point HEAD at its default branch; a summary line."""
        head, mirrored, total = self.mirror()
        branches = [ref for ref in mirrored if ref.startswith("refs/heads/")]
        # When the default branch is not the bottle's to fetch, a clone should still check something out.
        head = next((ref for ref in (head, "refs/heads/main", "refs/heads/master", *branches) if ref in branches), head)
        if head is not None:
            git(self.env, "symbolic-ref", "HEAD", head)
        tags = [ref for ref in mirrored if ref.startswith("refs/tags/")]
        return (f"mirrored from upstream: {len(branches)} branches, {len(tags)} tags (of its {total} refs), "
                f"HEAD {head or '(empty upstream)'}")

    def refresh(self) -> None:
        """Bring the gate up to date before a fetch; if upstream is away, the agent fetches what the gate has."""
        with self.repo_lock:
            try:
                self.mirror()
            except GitError as err:
                say(f"could not refresh from upstream, serving what the gate has: {err}", error=True)

    def _created(self) -> set[str]:
        try:
            with open(self._created_file) as file:
                return set(json.load(file))
        except FileNotFoundError:
            return set()

    def _save_created(self, refs: set[str]) -> None:
        temporary = self._created_file + ".tmp"
        with open(temporary, "w") as file:
            json.dump(sorted(refs), file)
        os.replace(temporary, self._created_file)

    def _quarantine(self, request: dict) -> str | None:
        """The quarantine directory the hook reports, which must be one of this repository's;
        None when the push brought no objects (git makes a quarantine only for a pack)."""
        if not request["quarantine"]:
            return None
        path = os.path.realpath(os.path.join(request["cwd"], request["quarantine"]))
        objects = os.path.realpath(os.path.join(self.repo, "objects"))
        if os.path.dirname(path) != objects or not os.path.basename(path).startswith("tmp_objdir-incoming-"):
            raise ValueError(f"{path} is not a quarantine of {self.repo}")
        return path

    def on_push(self, request: dict) -> tuple[int, str]:
        """Decide a push the hook reported: check, forward upstream, audit; the hook's exit code and message."""
        push = uuid.uuid4().hex[:12]
        updates = parse_updates(request["updates"])
        too_many = count_problem(self.config.rules, len(updates))
        if too_many is not None:  # one audit row, one line: not one for each of thousands of refs
            self.audit.record("git", "blocked", method="push", reason=too_many.why,
                              detail={"push": push, "check": too_many.check, **too_many.detail})
            return 1, f"{REFUSED}\n{too_many.why}\n  instead: {too_many.instead}\n"
        quarantine = self._quarantine(request)
        # The quarantine's objects, as the hook's own git would see them; but
        # not GIT_QUARANTINE_PATH, which git passes on to a local upstream's
        # receive-pack, where it forbids the very ref updates the push is for.
        env = self.env if quarantine is None else {
            **self.env, "GIT_OBJECT_DIRECTORY": quarantine,
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(self.repo, "objects"),
        }
        created = self._created()
        problems = check_push(env, self.config.rules, self.scanner, updates, created, quarantine)
        refused = any(problems)
        failure = None if refused else self.upstream.push(env, updates)
        if failure is not None:
            problems = [Problem("upstream", f"upstream did not take the push: {failure}",
                                "your commits are still in your clone. If upstream moved on (fetch first, stale "
                                "info): git fetch origin, rebase onto it and push again; if it could not be "
                                "reached, push again later") for _ in updates]
        elif not refused:
            made, gone = {u.ref for u in updates if u.creates}, {u.ref for u in updates if u.deletes}
            self._save_created((created | made) - gone)
        names = [shown(self.scanner, update.ref) for update in updates]  # a ref name may hold what must not be shown
        for update, name, problem in zip(updates, names, problems):
            self._record(push, update, name, problem, refused)
        return (1 if refused or failure else 0), _message(names, problems, refused, failure)

    def _record(self, push: str, update: Update, name: str, problem: Problem | None, refused: bool) -> None:
        detail = {"push": push, "old": update.old, "new": update.new}
        if problem is None and not refused:
            self.audit.record("git", "allowed", method="push", path=name, reason="forwarded upstream",
                              detail=detail)
            return
        if problem is None:
            why, detail["check"] = "passed, but another ref of the same push was refused", "atomic"
        else:
            why, detail = problem.why, {**detail, "check": problem.check, **problem.detail}
        self.audit.record("git", "blocked", method="push", path=name, reason=why, detail=detail)

    def record_oversized(self, sent: int) -> None:
        """A push git refused for its size before the hook ran (``receive.maxInputSize``)."""
        self.audit.record("git", "blocked", method="push",
                          reason=f"the push sent {sent / MiB:.1f} MB; git refused it before the checks "
                                 f"(a push may add {self.config.rules.max_push_mb:g} MB)",
                          detail={"check": "size", "bytes": sent})

    def record_failure(self, request: dict) -> None:
        """A push the gate failed to decide (a bug, or a hook it does not know): refused, and logged."""
        traceback.print_exc()
        updates = shown(self.scanner, str(request.get("updates", ""))[:2000])
        self.audit.record("git", "blocked", method="push", reason="the gate failed while checking this push",
                          detail={"check": "internal", "updates": updates})


def _message(names: list[str], problems: list[Problem | None], refused: bool, failure: str | None) -> str:
    """What the agent reads (git prefixes each line with "remote:"); *names*: the refs, as shown."""
    if not (refused or failure):
        return "".join(f"bottle git gate: {name} forwarded to upstream\n" for name in names)
    lines = [REFUSED]
    for name, problem in zip(names, problems):
        if problem is None:
            lines.append(f"{name}: passed the checks, but a push is all or nothing")
            lines.append("  instead: fix the refs named here and push again")
        else:
            lines.append(f"{name}: refused: {problem.why}")
            lines.append(f"  instead: {problem.instead}")
    return "\n".join(lines) + "\n"


class HookServer(socketserver.ThreadingUnixStreamServer):
    """Where the pre-receive hook asks the gate; one JSON line each way."""

    daemon_threads = True

    def __init__(self, path: str, gate: Gate):
        super().__init__(path, HookHandler)
        os.chmod(path, 0o600)
        self.gate = gate


class HookHandler(socketserver.StreamRequestHandler):
    server: HookServer

    def handle(self) -> None:
        request: dict = {}
        try:
            request = json.loads(self.rfile.readline())
            code, message = self.server.gate.on_push(request)
        except Exception:  # fail closed: a push the gate could not decide does not go through
            self.server.gate.record_failure(request)
            code, message = 1, "bottle git gate: the gate failed while checking this push; nothing was sent upstream\n"
        self.wfile.write(json.dumps({"code": code, "message": message}).encode() + b"\n")


class GateHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], gate: Gate):
        super().__init__(address, GitHandler)
        self.gate = gate


class GitHandler(BaseHTTPRequestHandler):
    """Smart HTTP for the one repository, through ``git http-backend``; anything else is refused."""

    protocol_version = "HTTP/1.1"  # so that curl's "Expect: 100-continue" is answered at once
    server_version = "bottle-gitgate"
    server: GateHTTPServer

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == URL_PATH + "/info/refs" and query in SERVICES:
            if query == "service=git-upload-pack":
                self.server.gate.refresh()
            self._backend(path, query)
        else:
            self._refuse(404, f"this gate serves git's smart HTTP protocol at {URL_PATH} only")

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        if path == URL_PATH + "/git-upload-pack":
            self._backend(path, query)
        elif path == URL_PATH + "/git-receive-pack":
            gate = self.server.gate
            with gate.repo_lock:
                sent = self._backend(path, query)
            if sent > gate.hard_limit:
                gate.record_oversized(sent)
        else:
            self._refuse(404, f"this gate serves git's smart HTTP protocol at {URL_PATH} only")

    def _refuse(self, code: int, text: str) -> None:
        body = f"bottle git gate: {text}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _backend(self, path: str, query: str) -> int:
        """Run ``git http-backend`` for this request, relay its answer; the request body's size."""
        repo = self.server.gate.repo
        env = {
            **self.server.gate.env, "GIT_PROJECT_ROOT": os.path.dirname(repo), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + os.path.basename(repo) + path.removeprefix(URL_PATH),
            "REQUEST_METHOD": self.command, "QUERY_STRING": query, "REMOTE_USER": "agent",
            "REMOTE_ADDR": self.client_address[0], "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        del env["GIT_DIR"]  # http-backend finds the repository from GIT_PROJECT_ROOT and PATH_INFO
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        if self.command == "POST" and not chunked:
            env["CONTENT_LENGTH"] = str(length)  # absent for chunked: http-backend then reads to the end
        backend = subprocess.Popen(["git", "http-backend"], env=env, stdout=subprocess.PIPE,
                                   stdin=subprocess.PIPE if self.command == "POST" else subprocess.DEVNULL)
        sent = [0]
        pump = None
        if self.command == "POST":
            pump = threading.Thread(target=self._pump, args=(backend.stdin, chunked, length, sent,
                                                             self.server.gate.hard_limit), daemon=True)
            pump.start()
        self.close_connection = True  # the answer's end is the connection's end
        try:
            self._relay(backend.stdout)
        except OSError:  # the client went away
            backend.kill()
        finally:
            backend.stdout.close()
            backend.wait()
            if pump is not None:
                pump.join(DRAIN_SECONDS)
                if pump.is_alive():  # the client sends on and on: unblock the body's reader
                    self.connection.shutdown(socket.SHUT_RDWR)
                    pump.join()
        return sent[0]

    def _pump(self, stdin, chunked: bool, length: int, sent: list[int], drain: int) -> None:
        """Copy the request body (chunked or not) to the backend, counting it. When the backend stops reading
        (git refused the push), read on and drop up to *drain* more bytes: a client still sending when the
        connection closes sees a broken pipe, not the refusal the gate sent it."""
        blocks = self._chunks() if chunked else self._fixed(length)
        try:
            for block in blocks:
                sent[0] += len(block)
                stdin.write(block)
        except ValueError:  # the client sent nonsense
            return
        except OSError:  # the backend stopped reading, or the client left
            dropped = 0
            try:
                for block in blocks:
                    dropped += len(block)
                    if dropped > drain:
                        return
            except (OSError, ValueError):
                return
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _fixed(self, length: int):
        while length > 0:
            block = self.rfile.read(min(CHUNK, length))
            if not block:
                return
            length -= len(block)
            yield block

    def _chunks(self):
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            yield from self._fixed(size)
            self.rfile.readline(1024)  # the CRLF after the chunk

    def _relay(self, out) -> None:
        """The CGI answer: header lines (``Status:`` among them), a blank line, the body."""
        line = out.readline()
        if not line:
            self._refuse(502, "git http-backend gave no answer (the gate's log may say why)")
            return
        status, headers = 200, []
        while line not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name.strip(), value.strip()))
            line = out.readline()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        while block := out.read1(CHUNK):
            self.wfile.write(block)

    def log_request(self, code="-", size="-") -> None:
        """Requests are not logged (errors still are): the audit log has the pushes."""


class Stop(Exception):
    """Raised by the signal handler: the sidecar is stopping."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop()


def say(message: str, error: bool = False) -> None:
    print(f"bottle-gitgate: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bottle_gitgate_sidecar.gitgate", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=8418, help="0 picks a free port (printed when ready)")
    parser.add_argument("--repo", required=True, help="the gate's bare repository (made if missing)")
    parser.add_argument("--config", required=True, help="the gate's config (JSON)")
    parser.add_argument("--credentials", help="credential values as JSON {name: value}, mode 0600, on a tmpfs")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    return parser.parse_args(argv)


def start(args: argparse.Namespace, runtime_dir: str) -> tuple[GateHTTPServer, HookServer]:
    """Everything up to the ready line: config, credential, audit log, repository, seed, listening sockets."""
    config = load_config(args.config)
    upstream = Upstream(config, load_credentials(args.credentials), runtime_dir)
    try:
        audit = AuditLog(args.audit, config.bottle)
    except sqlite3.Error as err:
        raise StartupError(f"cannot open the audit log {args.audit}: {err}") from None
    gate = Gate(args.repo, config, upstream, audit)
    try:
        hooks = HookServer(os.path.join(runtime_dir, "hook.sock"), gate)
        gate.prepare(hooks.server_address)
    except (OSError, GitError) as err:
        raise StartupError(f"cannot set up the gate's repository {args.repo}: {err}") from None
    try:
        summary = gate.seed()
    except GitError as err:
        raise StartupError(f"cannot fetch from upstream {config.upstream}: {err}") from None
    try:
        http = GateHTTPServer((args.listen_host, args.listen_port), gate)
    except OSError as err:
        raise StartupError(f"cannot listen on {args.listen_host}:{args.listen_port}: {err}") from None
    say(summary)
    return http, hooks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The runtime directory (hook socket, SSH key) sits beside the credentials
    # file, which the host puts on the sidecar's tmpfs: the key never reaches a disk.
    beside = os.path.dirname(os.path.abspath(args.credentials)) if args.credentials else None
    runtime_dir = tempfile.mkdtemp(prefix="bottle-gitgate-", dir=beside)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        http, hooks = start(args, runtime_dir)
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        host, port = http.server_address[:2]
        say(f"listening on {host}:{port}")
        http.serve_forever()
    except StartupError as err:
        say(str(err), error=True)
        return 2
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
