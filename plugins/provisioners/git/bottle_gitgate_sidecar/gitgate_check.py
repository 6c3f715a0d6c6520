"""The git gate's checks on a push: which refs, what history, how big, what secrets.

The gate's pre-receive hook hands every pushed ref update here while git holds
the pushed objects in quarantine. Each check answers with a ``Problem`` (why
the ref is refused and what the agent may do instead) or None. Nothing here
talks to upstream: ``gitgate`` forwards what passes.

"New" means not reachable from any ref the gate holds, and the gate holds only
what upstream has (it mirrors upstream's refs that the bottle may fetch or push
and keeps a pushed ref only once upstream took it). So secrets are looked for
in what the push adds, never in history upstream already has: a key committed
upstream years ago does not block a clean commit on top of it.

The secret scan covers everything a push carries: the ref's name; every new
commit and tag object whole (author, committer, tagger, message, signatures,
any extra header); the name of every file and directory a new commit adds or
changes (empty directories too, which only a hand-made tree holds); the lines
new commits add to files; and, when a ref points at a tree or a blob with no
commit in between, every name in its new trees and every new blob whole. What
the scan finds is named by detector and place, never repeated.

Stdlib and ``secrets_scan`` only: in the sidecar image this is ``bottle_sidecar.gitgate_check``.
"""

import bisect
import os
import re
import subprocess
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from bottle_sidecar.secrets_scan import Hit, Markers, Scanner

MiB = 1024 * 1024
MAX_FINDINGS = 10  # per ref: enough to fix them all in one go, short enough to read
MAX_PUSH_REFS = 20  # refs one push may update, unless the profile says otherwise (git.max_push_refs)
# What a ref name (or a file name shown to the agent) may not hold: control
# characters (C0, C1), format characters (bidi overrides and isolates,
# zero-width ones), line and paragraph separators, and bytes that are not
# UTF-8 (read as lone surrogates). Git itself refuses only C0 and DEL.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Header names of commits and tags that a finding may name; any other is "an
# extra header": its name could be the secret itself.
HEADERS = frozenset({"tree", "parent", "author", "committer", "encoding", "gpgsig", "gpgsig-sha256", "mergetag",
                     "object", "type", "tag", "tagger"})
# -p --cc: merges show only what differs from every parent (an evil merge, a
# conflict resolution), not what they bring from the merged branch. --text:
# a NUL byte must not make a file "binary" and unscanned. -U0: added lines only.
PATCH = (
    "-c", "core.quotePath=false", "log", "-p", "--cc", "--unified=0", "--text", "-M",
    "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/",
)
# Every path a commit adds or changes, against each parent of a merge (-m),
# directories too (-t): one raw line each, no content. Combined diffs (--cc)
# cannot show directories (git fails on them), hence a log of its own.
NAMES = ("-c", "core.quotePath=false", "log", "--raw", "-t", "-r", "-m", "--no-renames", "--no-color")
PIECE = 4 * MiB  # what the scanner takes of git's output at a time
# An entry of a raw tree is MODE SP NAME NUL ID, the ID binary (20 or 32
# bytes). A match that starts inside an ID by chance runs to the next NUL, so
# that it holds the next entry's name whole, after a space: no name is lost.
_TREE_ENTRY = re.compile(rb"[0-7]{5,6} ([^\0]*)\0")
_HUNK = re.compile(rb"(@+) [^+]*\+(\d+)")


class GitError(Exception):
    """A git command failed; the message is git's last line of complaint."""


def git(env: dict[str, str], *args: str, input: bytes | None = None) -> bytes:
    """Run git with *env* (the whole environment) and *input* on its stdin; its stdout, or GitError."""
    done = subprocess.run(["git", *args], env=env, input=input, capture_output=True)
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
    max_push_refs: int = MAX_PUSH_REFS

    def example_ref(self) -> str:
        """A name the agent may push to, for the hints: ``bottle/<name>`` for ``refs/heads/bottle/*``."""
        return self.push_refs[0].removeprefix("refs/heads/").replace("*", "<name>")


@dataclass(frozen=True)
class Problem:
    """Why a ref update is refused (one line, never a secret) and what the agent may do instead."""

    check: str  # "refs", "ref-name", "ref", "protected", "delete", "force", "size", "secret", "upstream", "internal"
    why: str
    instead: str
    detail: dict = field(default_factory=dict)


def unsafe_character(text: str) -> str | None:
    """The first character of *text* that must not reach a terminal or a ref, described; or None."""
    for char in text:
        if unicodedata.category(char) in UNSAFE_CATEGORIES:
            if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
                return f"the byte 0x{ord(char) - 0xDC00:02X}, which is not UTF-8"
            return f"U+{ord(char):04X} {unicodedata.name(char, '(a control character)')}"
    return None


#: The markers that stand for secrets in what the gate repeats: one gate process serves one bottle,
#: so a secret reads the same in every answer and audit row of its gate.
MARKERS = Markers()


def shown(scanner: Scanner, text: str) -> str:
    """*text* (a ref or file name the agent chose) as the gate may repeat it, in its answer and in
    the audit log: each secret replaced by its marker, as a name is scanned (no word needed around
    it, see ``Scanner.scan_names``), and unsafe characters escaped (``\\x1b``)."""
    text = scanner.redact_name(text, MARKERS)
    return "".join(ascii(char)[1:-1] if unicodedata.category(char) in UNSAFE_CATEGORIES else char for char in text)


def count_problem(rules: Rules, count: int) -> Problem | None:
    """A push may update at most ``max_push_refs`` refs: each costs a scan and an audit row."""
    if count <= rules.max_push_refs:
        return None
    return Problem("refs", f"the push updates {count} refs, more than the {rules.max_push_refs} a push may update",
                   f"push at most {rules.max_push_refs} refs at a time (name them: git push origin REF...)",
                   {"refs": count})


def name_problem(scanner: Scanner, update: Update) -> Problem | None:
    """A ref name must hold no unsafe character and no secret (it reaches upstream, and the operator's screen)."""
    unsafe = unsafe_character(update.ref)
    if unsafe is not None:
        return Problem("ref-name", f"the ref name holds {unsafe}",
                       "push to a name without control, bidi or other invisible characters")
    hit = scanner.scan_names([("the ref name", update.ref.encode("utf-8", "surrogateescape"))])
    if hit is not None:
        return Problem("secret", f"the ref name holds what looks like a secret: {hit.detector}",
                       "push to a name with no secret in it; keep secrets in the environment",
                       {"findings": [Finding(hit.detector, "the ref name").__dict__]})
    return None


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
    """A secret seen in what a push adds: by which detector, where, in which object; never the secret."""

    detector: str
    where: str  # "settings.py line 2", "the author", "the message", "a file or directory name", "the content", ...
    object: str | None = None  # the commit, tag, tree or blob it is in (None: the ref name)
    kind: str | None = None  # which of those

    def __str__(self) -> str:
        of = f" ({self.kind} {self.object[:12]})" if self.object else ""
        return f"{self.detector} in {self.where}{of}"


def secret_problem(env: dict[str, str], scanner: Scanner, update: Update) -> Problem | None:
    """The secrets in what *update* brings that no ref of the gate (so upstream) has yet.

    New commits and tags are read whole, in one ``cat-file``; the paths
    the commits touch, in one raw log; what they add to files, from their
    patches. The usual push holds no secret, and one pass over each says so;
    only if the patches turn something up are they read again, to say where
    (or to find it on a removed line: taking an old secret out is fine). The
    three reads are three gits at once, each scanned in its own thread: the
    push waits for the longest of them (the patches), not for their sum. A
    ref that reaches trees or blobs with no commit in between has its new
    trees' names and new blobs scanned whole.
    """
    if update.deletes:
        return None
    new = (update.new, "--not", "--all")
    if git(env, "cat-file", "-t", f"{update.new}^{{}}").strip() != b"commit":  # a tree or a blob, maybe tagged
        findings = object_findings(scanner, new_objects(env, new, "blob:none")) + blob_findings(env, scanner, new)
    else:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="gitgate-check") as pool:
            objects = pool.submit(lambda: object_findings(scanner, new_objects(env, new, "tree:0")))
            names = pool.submit(lambda: name_findings(scanner, git(env, *NAMES, "--format=%x00%H", *new)))
            patched = pool.submit(streamed_hit, env, scanner, [*PATCH, "--format=%x00%H", *new])
        findings = objects.result() + names.result()
        if patched.result() is not None:
            findings += diff_findings(scanner, git(env, *PATCH, "--format=%x00%H", *new))
    if not findings:
        return None
    listed = findings[:MAX_FINDINGS]
    more = " and more" if len(findings) > MAX_FINDINGS else ""
    return Problem("secret", "the push holds what looks like a secret: " + "; ".join(map(str, listed)) + more,
                   "take it out of every new commit (git rebase -i and edit them, or git reset --soft to the "
                   "upstream commit and commit again), then push again; keep secrets in the environment, "
                   "never in the repository",
                   {"findings": [f.__dict__ for f in listed]})


def new_objects(env: dict[str, str], new: tuple[str, ...], without: str) -> list[tuple[str, str, bytes]]:
    """(type, id, content) of every object in *new* (``TIP --not --all``) but those the rev-list
    filter *without* leaves out: ``tree:0`` keeps commits and tags, ``blob:none`` trees too."""
    ids = git(env, "rev-list", "--objects", "--no-object-names", f"--filter={without}", "--filter-provided-objects",
              *new)
    if not ids:
        return []
    objects, data, at = [], git(env, "cat-file", "--batch", input=ids), 0
    while at < len(data):
        header_end = data.index(b"\n", at)
        oid, kind, size = data[at:header_end].decode().split()
        start = header_end + 1
        objects.append((kind, oid, data[start:start + int(size)]))
        at = start + int(size) + 1
    return objects


def object_findings(scanner: Scanner, objects: list[tuple[str, str, bytes]]) -> list[Finding]:
    """Secrets in new commits and tags (raw: every header and the message) and in new trees' names.

    All of them are scanned as one text first: a push with no secret costs
    one pass per detector, however many objects it holds. Only when that
    finds something is each object scanned apart, to say where.
    """
    texts = [tree_names(content) if kind == "tree" else content for kind, _, content in objects]
    findings: list[Finding] = []
    if scanner.scan(b"\n".join(texts)) is None:
        return findings
    for (kind, oid, _), text in zip(objects, texts):
        offset = 0
        while len(findings) <= MAX_FINDINGS and (hit := scanner.scan(text[offset:])) is not None:
            at = offset + hit.offset
            findings.append(Finding(hit.detector, _part(kind, text, at), oid, kind))
            offset = (text.find(b"\n", at) + 1) or len(text)  # on from the next line
    return findings


def tree_names(tree: bytes) -> bytes:
    """The entry names of a raw tree object, one a line."""
    return b"\n".join(_TREE_ENTRY.findall(tree))


def _part(kind: str, text: bytes, at: int) -> str:
    """Where offset *at* of a raw object is, in words that cannot hold the secret."""
    if kind == "tree":
        return "a file or directory name"
    body = text.find(b"\n\n")
    if body != -1 and at > body:
        return "the message"
    line = text.rfind(b"\n", 0, at) + 1
    while line > 0 and text[line:line + 1] == b" ":  # a continuation line (gpgsig, mergetag): its header's
        line = text.rfind(b"\n", 0, line - 1) + 1
    name = text[line:text.find(b" ", line)].decode(errors="replace")
    if name not in HEADERS:
        return "an extra header"
    return {"tag": "the tag name", "author": "the author", "committer": "the committer",
            "tagger": "the tagger"}.get(name, f"the {name} header")


def name_findings(scanner: Scanner, log: bytes) -> list[Finding]:
    """Secrets in the paths new commits add or change; *log* is ``git log`` with ``NAMES``' options."""
    findings: list[Finding] = []
    if scanner.scan(log) is None:
        return findings
    commit = ""
    for line in log.split(b"\n"):
        if line.startswith(b"\0"):
            commit = line[1:].decode()
        elif line.startswith(b":") and len(findings) <= MAX_FINDINGS:
            hit = scanner.scan(line.partition(b"\t")[2])
            if hit is not None:
                findings.append(Finding(hit.detector, "a file or directory name", commit, "commit"))
    return list(dict.fromkeys(findings))  # a merge lists a path once for each parent


def blob_findings(env: dict[str, str], scanner: Scanner, new: tuple[str, ...]) -> list[Finding]:
    """Secrets in the new blobs a ref reaches with no commit in between, each scanned whole."""
    findings = []
    blobs = git(env, "rev-list", "--objects", "--no-object-names", "--filter=object:type=blob",
                "--filter-provided-objects", *new).decode().split()
    for blob in blobs:
        hit = streamed_hit(env, scanner, ["cat-file", "blob", blob])
        if hit is not None:
            findings.append(Finding(hit.detector, "the content", blob, "blob"))
    return findings


def streamed_hit(env: dict[str, str], scanner: Scanner, args: list[str]) -> Hit | None:
    """The first thing the scanner finds in git's output, read and scanned a piece
    (of whole lines) at a time: a 50 MB push never sits in the gate's memory whole."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(["git", *args], env=env, stdout=subprocess.PIPE, stderr=errors)
        found, rest, block = None, b"", b"."
        while block and found is None:
            block = process.stdout.read(PIECE)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            found, rest = scanner.scan(data[:cut]), data[cut:]
        if found is not None:
            process.kill()
        process.stdout.close()
        code = process.wait()
        if found is None and code != 0:
            errors.seek(0)
            raise GitError(last_complaint(errors.read()) or f"git {args[0]} exited with {code}")
    return found


def diff_findings(scanner: Scanner, diff: bytes) -> list[Finding]:
    """Secrets on the lines the new commits add; *diff* is ``git log`` with ``PATCH``'s options."""
    if scanner.scan(diff) is None:  # what turned up was in a file name (name_findings says where)
        return []
    added, starts, places = added_lines(diff)
    findings: list[Finding] = []
    offset = 0
    while len(findings) <= MAX_FINDINGS:
        hit = scanner.scan(added[offset:])
        if hit is None:
            break
        index = bisect.bisect_right(starts, offset + hit.offset) - 1
        commit, path, line = places[index]
        where = f"{shown(scanner, path)} line {line}"  # a path may hold a secret too
        findings.append(Finding(hit.detector, where, commit, "commit"))
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
    """A Problem or None for each update, in order: names, refs and history first, then the
    push's size, then secrets (the dearest check, skipped for a push too big to take).
    The number of refs is the caller's to check first (``count_problem``)."""
    problems = [name_problem(scanner, u) or ref_problem(rules, u, created) or history_problem(env, rules, u)
                for u in updates]
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
