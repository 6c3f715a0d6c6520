"""The git gate's checks on a push: which refs, what history, how big, what secrets.

The gate's pre-receive hook hands every pushed ref update here while git holds
the pushed objects in quarantine. Each check answers with a ``Problem`` (why
the ref is refused and what the agent may do instead) or None. Nothing here
talks to upstream: ``gitgate`` forwards what passes.

"New" means not reachable from any ref the gate holds, and the gate holds only
what upstream has (it is seeded from upstream and keeps a pushed ref only once
upstream took it). So secrets are looked for in what the push adds, never in
history upstream already has: a key committed upstream years ago does not block
a clean commit on top of it.

Stdlib and ``secrets_scan`` only: in the sidecar image this is ``bottle_sidecar.gitgate_check``.
"""

import bisect
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from .secrets_scan import Scanner

MiB = 1024 * 1024
MAX_FINDINGS = 10  # per ref: enough to fix them all in one go, short enough to read
# -p --cc: merges show only what differs from every parent (an evil merge, a
# conflict resolution), not what they bring from the merged branch. --text:
# a NUL byte must not make a file "binary" and unscanned. -U0: added lines only.
PATCH = (
    "-c", "core.quotePath=false", "log", "-p", "--cc", "--unified=0", "--text", "-M",
    "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/",
)
PIECE = 4 * MiB  # what the scanner takes of git's output at a time
_HUNK = re.compile(rb"(@+) [^+]*\+(\d+)")


class GitError(Exception):
    """A git command failed; the message is git's last line of complaint."""


def git(env: dict[str, str], *args: str) -> bytes:
    """Run git with *env* (the whole environment); its stdout, or GitError."""
    done = subprocess.run(["git", *args], env=env, capture_output=True)
    if done.returncode != 0:
        raise GitError(last_complaint(done.stderr) or f"git {args[0]} exited with {done.returncode}")
    return done.stdout


def last_complaint(stderr: bytes) -> str:
    """The line of git's stderr that says what went wrong: its last fatal/error line, else its last line."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    complaints = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (complaints or lines or [""])[-1]


@dataclass(frozen=True)
class Update:
    """One line of pre-receive's input: *ref* goes from *old* to *new* (all zeros: absent)."""

    old: str
    new: str
    ref: str

    @property
    def creates(self) -> bool:
        return not self.old.strip("0")

    @property
    def deletes(self) -> bool:
        return not self.new.strip("0")


def parse_updates(text: str) -> list[Update]:
    """The ref updates in pre-receive's input; ValueError if a line is not ``OLD NEW REF``."""
    updates = []
    for line in text.splitlines():
        old, new, ref = line.split(" ", 2)
        if not (re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", old) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", new)):
            raise ValueError(f"not an update line: {line!r}")
        updates.append(Update(old, new, ref))
    return updates


@dataclass(frozen=True)
class Rules:
    """What the bottle's profile lets the agent push (the gate config's fields)."""

    push_refs: tuple[str, ...]
    protected: tuple[str, ...]
    allow_force: bool
    max_push_mb: float

    def example_ref(self) -> str:
        """A name the agent may push to, for the hints: ``bottle/<name>`` for ``refs/heads/bottle/*``."""
        return self.push_refs[0].removeprefix("refs/heads/").replace("*", "<name>")


@dataclass(frozen=True)
class Problem:
    """Why a ref update is refused (one line, never a secret) and what the agent may do instead."""

    check: str  # "ref", "protected", "delete", "force", "size", "secret", "upstream", "internal"
    why: str
    instead: str
    detail: dict = field(default_factory=dict)


def ref_problem(rules: Rules, update: Update, created: set[str]) -> Problem | None:
    """The ref must be one the agent may push, not protected, and deleted only if the gate created it."""
    ref = update.ref
    if not rules.push_refs:
        return Problem("ref", "this bottle may not push: its profile allows no refs",
                       "none from here; ask the operator to add a pattern to the profile's [git] push_refs")
    example = rules.example_ref()
    if any(fnmatchcase(ref, pattern) for pattern in rules.protected):
        return Problem("protected", f"{ref} is protected: the gate never updates it",
                       f"push your work to a branch of your own (git push origin HEAD:{example}) "
                       "and ask for it to be merged")
    if not any(fnmatchcase(ref, pattern) for pattern in rules.push_refs):
        return Problem("ref", f"{ref} is not a ref the agent may push (allowed: {', '.join(rules.push_refs)})",
                       f"push to an allowed name instead, e.g. git push origin HEAD:{example}")
    if update.deletes and ref not in created:
        return Problem("delete", f"{ref} was not created through the gate, so it may not be deleted",
                       "leave it as it is; push your work to a new branch if it should go elsewhere")
    return None


def history_problem(env: dict[str, str], rules: Rules, update: Update) -> Problem | None:
    """Without allow_force an update must fast-forward: upstream history is never rewritten."""
    if rules.allow_force or update.creates or update.deletes:
        return None
    done = subprocess.run(["git", "merge-base", "--is-ancestor", update.old, update.new], env=env,
                          capture_output=True)
    if done.returncode == 0:
        return None
    branch = update.ref.removeprefix("refs/heads/")
    return Problem("force", f"{update.ref} would lose commits (not a fast-forward) and force pushes are not allowed",
                   f"git fetch origin, rebase or merge your work onto origin/{branch}, and push again; "
                   "or push to a new branch")


def quarantine_bytes(quarantine: str | None) -> int:
    """The size on disk of the pushed objects: git holds them in the quarantine until the hook
    says yes (None: it brought none)."""
    total = 0
    if quarantine is None:
        return total
    for directory, _, files in os.walk(quarantine):
        total += sum(os.lstat(os.path.join(directory, name)).st_size for name in files)
    return total


def size_problem(rules: Rules, pushed: int) -> Problem | None:
    if pushed <= rules.max_push_mb * MiB:
        return None
    return Problem("size", f"the push adds {pushed / MiB:.1f} MB of objects, more than the "
                   f"{rules.max_push_mb:g} MB a push may add",
                   "push in smaller steps (fewer commits at a time), and keep large generated or binary "
                   "files out of the commits", {"bytes": pushed})


@dataclass(frozen=True)
class Finding:
    """A secret seen in a new commit: where, by which detector; never the secret."""

    detector: str
    commit: str
    path: str | None  # None: in the commit message
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.path is not None else "the commit message"
        return f"{self.detector} in {where} (commit {self.commit[:12]})"


def secret_problem(env: dict[str, str], scanner: Scanner, update: Update) -> Problem | None:
    """The secrets in the commits *update* brings that no ref of the gate (so upstream) has yet.

    The usual push holds none, and one pass over its messages and patches
    says so. Only if something turns up are messages and patches read apart,
    to say where it is (or to find it on a removed line: taking an old secret
    out is fine).
    """
    if update.deletes:
        return None
    new = (update.new, "--not", "--all")
    if not streamed_hit(env, scanner, [*PATCH, "--format=%x00%H%n%B", *new]):
        return None
    findings = message_findings(scanner, git(env, "log", "-z", "--format=%H%n%B", *new))
    findings += diff_findings(scanner, git(env, *PATCH, "--format=%x00%H", *new))
    if not findings:
        return None
    shown = findings[:MAX_FINDINGS]
    more = " and more" if len(findings) > MAX_FINDINGS else ""
    return Problem("secret", "the new commits hold what looks like a secret: " + "; ".join(map(str, shown)) + more,
                   "take it out of every new commit (git rebase -i and edit them, or git reset --soft to the "
                   "upstream commit and commit again), then push again; keep secrets in the environment, "
                   "never in the repository",
                   {"findings": [f.__dict__ for f in shown]})


def streamed_hit(env: dict[str, str], scanner: Scanner, args: list[str]) -> bool:
    """Whether git's output holds anything the scanner finds, read and scanned a piece
    (of whole lines) at a time: a 50 MB push never sits in the gate's memory whole."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(["git", *args], env=env, stdout=subprocess.PIPE, stderr=errors)
        found, rest, block = False, b"", b"."
        while block and not found:
            block = process.stdout.read(PIECE)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            found, rest = scanner.scan(data[:cut]) is not None, data[cut:]
        if found:
            process.kill()
        process.stdout.close()
        code = process.wait()
        if not found and code != 0:
            errors.seek(0)
            raise GitError(last_complaint(errors.read()) or f"git log exited with {code}")
    return found


def message_findings(scanner: Scanner, log: bytes) -> list[Finding]:
    """Secrets in commit messages: *log* is ``git log -z --format=%H%n%B``, one record per commit."""
    findings = []
    for record in log.split(b"\0"):
        sha, _, message = record.partition(b"\n")
        hit = scanner.scan(message)
        if hit is not None:
            findings.append(Finding(hit.detector, sha.decode(), None))
    return findings


def diff_findings(scanner: Scanner, diff: bytes) -> list[Finding]:
    """Secrets on the lines the new commits add; *diff* is ``git log`` with ``PATCH``'s options."""
    if scanner.scan(diff) is None:  # what turned up was in a message
        return []
    added, starts, places = added_lines(diff)
    findings: list[Finding] = []
    offset = 0
    while len(findings) <= MAX_FINDINGS:
        hit = scanner.scan(added[offset:])
        if hit is None:
            break
        index = bisect.bisect_right(starts, offset + hit.offset) - 1
        findings.append(Finding(hit.detector, *places[index]))
        offset = starts[index + 1] if index + 1 < len(starts) else len(added)
    return findings


def added_lines(diff: bytes) -> tuple[bytes, list[int], list[tuple[str, str, int]]]:
    """The lines the diff adds, joined by newlines, with each one's offset there and its
    (commit, path, line number in the new file).

    In a hunk every line starts with one column per parent ("+" added, "-"
    removed, " " kept); a merge's combined hunk has two or more. A line counts
    as added when it is new against every parent. Lines starting with
    ``diff``, ``@@`` or NUL are headers: no hunk line can start like that, so
    file contents cannot pose as structure.
    """
    lines: list[bytes] = []
    starts: list[int] = []
    places: list[tuple[str, str, int]] = []
    commit = path = ""
    columns = number = position = 0  # columns 0: in a file's header, not in a hunk
    for line in diff.split(b"\n"):
        if line.startswith(b"\0"):
            commit, path, columns = line[1:].decode(), "", 0
        elif line.startswith(b"diff "):
            path, columns = "", 0
        elif line.startswith(b"@@"):
            match = _HUNK.match(line)
            columns, number = (len(match.group(1)) - 1, int(match.group(2))) if match else (0, 0)
        elif columns == 0:
            if line.startswith(b"+++ "):
                path = _path(line[4:])
        elif line and line[0] in b"+- ":
            prefix = line[:columns]
            if b"-" in prefix:
                continue
            if prefix == b"+" * columns and path:
                lines.append(line[columns:])
                starts.append(position)
                places.append((commit, path, number))
                position += len(line) - columns + 1
            number += 1
    return b"\n".join(lines), starts, places


def _path(name: bytes) -> str:
    """A path from a ``+++`` header: git quotes one with unusual characters and prefixes it with b/."""
    text = name.decode(errors="replace")
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return text.removeprefix("b/")


def check_push(
    env: dict[str, str], rules: Rules, scanner: Scanner, updates: list[Update], created: set[str],
    quarantine: str | None,
) -> list[Problem | None]:
    """A Problem or None for each update, in order: refs and history first, then the
    push's size, then secrets (the dearest check, skipped for a push too big to take)."""
    problems = [ref_problem(rules, u, created) or history_problem(env, rules, u) for u in updates]
    if any(not (problem or update.deletes) for problem, update in zip(problems, updates)):
        too_big = size_problem(rules, quarantine_bytes(quarantine))
        for index, update in enumerate(updates):
            if problems[index] is None and not update.deletes:
                try:
                    problems[index] = too_big or secret_problem(env, scanner, update)
                except GitError as err:
                    problems[index] = Problem("internal", f"the gate could not read the pushed commits: {err}",
                                              "push commits (branches), or ask the operator to look at the gate's log")
    return problems
