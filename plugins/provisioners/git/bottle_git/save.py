"""Nothing lost at the end: what the agent left in its working copy goes upstream through the gate.

When a bottle with a gate stops, its sidecar still runs (``bottle_stopping``
comes before teardown), so the agent's uncommitted changes are committed as a
work-in-progress commit by the bottle's identity, and every commit no gate
branch holds is pushed to the bottle's own branch, under the gate's checks
(refs, size, the secret scan) like any push of the agent's; what is said to
be saved is what the gate's audit log shows it took. Whatever the gate
refuses is not dropped: it stays in the bottle's workdir volume (``bottle
resume`` goes on with it, ``bottle rm`` refuses to delete it), and where
the backend keeps no volume, the whole working copy, ``.git`` included, is
kept as a tar in the bottle's state dir; the message says why and where.

What the save found is recorded in the state dir (``work.json``), for
``bottle ls`` and ``bottle rm``: how many commits only the bottle holds. A
run that did not get to its save (killed) leaves no record, and unknown is
unsaved.
"""

import json
import shlex
import sys
from pathlib import Path

from bottle.display import terminal_safe
from bottle.sidecar.runtime import audit_path
from bottle_sidecar.audit import last_id, read_events

#: Seconds the save may take in all (it runs while teardown waits, signals ignored).
SAVE_TIMEOUT = 120
#: The most the kept tar may hold; a larger working copy is left alone, said so.
KEEP_LIMIT = 512 * 1024 * 1024
KEPT = "kept-workspace.tar"
RECORD = "work.json"
#: Run as the agent in its working copy; prints one line "SAVED COMMITS WIP" or why not.
SCRIPT = r"""
set -u
cd "$BOTTLE_WORKDIR" 2>/dev/null && git rev-parse --git-dir >/dev/null 2>&1 || { echo "none 0 0"; exit 0; }
wip=0
if [ -n "$(git status --porcelain --untracked-files=all | head -c 1)" ]; then
    git add -A && git -c core.hooksPath=/dev/null commit --quiet --no-verify \
        -m "bottle: work in progress the agent left uncommitted" || { echo "failed 0 0"; exit 0; }
    wip=1
fi
commits=$(git rev-list --count HEAD --not --remotes=origin 2>/dev/null || echo 0)
if [ "$commits" -eq 0 ]; then echo "saved 0 0"; exit 0; fi
if git -c core.hooksPath=/dev/null push --quiet --no-verify origin "HEAD:refs/heads/$BOTTLE_BRANCH" >&2; then
    echo "saved $commits $wip"
else
    echo "refused $commits $wip"
fi
"""


def gate_took(audit: Path, branch: str, since_id: int) -> bool:
    """Whether the gate's own audit log (the sidecar's record, not the guest's word) shows a push of *branch*
    it let through after row *since_id*: the guest's git could have been configured to push elsewhere."""
    return any((event["source"], event["decision"], event["method"], event["path"])
               == ("git", "allowed", "push", f"refs/heads/{branch}") for event in read_events(audit, since_id=since_id))


def save_work(plan, git, bottle) -> list[str]:
    """Commit and push what the agent left; the lines to tell the user (none when there was nothing)."""
    audit = audit_path(plan.state_dir)
    since = last_id(audit)
    result = bottle.exec(
        ["timeout", str(SAVE_TIMEOUT), "sh", "-c", SCRIPT],
        env={"BOTTLE_WORKDIR": plan.guest.workdir, "BOTTLE_BRANCH": git.work_branch,
             "GIT_AUTHOR_NAME": git.identity.name, "GIT_AUTHOR_EMAIL": git.identity.email,
             "GIT_COMMITTER_NAME": git.identity.name, "GIT_COMMITTER_EMAIL": git.identity.email},
    )
    words = result.stdout.decode(errors="replace").split()
    state, commits, wip = words if len(words) == 3 else ("failed", "?", "0")
    if state == "none" or (state == "saved" and commits == "0"):
        _record(plan, held=0)
        return []
    what = f"{commits} commit{'' if commits == '1' else 's'} the agent had not pushed"
    if wip == "1":
        what += ", its uncommitted work the last of them" if commits != "1" else ": its uncommitted work"
    if state == "saved" and gate_took(audit, git.work_branch, since):
        _record(plan, held=0)
        return [f"saved to {git.work_branch} on {git.upstream}: {what}"]
    why = (_why(result) if state != "saved" else
           "the gate has no record of the push (the working copy's git configuration sent it elsewhere?)")
    _record(plan, held=int(commits) if commits.isdigit() else None, why=why)
    lines = [f"could not save the agent's work through the git gate ({why})"]
    if bottle.durable:
        return [*lines, f"it stays in bottle {plan.slug}'s {plan.guest.workdir}: `bottle resume {plan.slug}` goes on "
                        f"with it, and `bottle rm {plan.slug}` will not delete it without --force"]
    return [*lines, *keep(plan, bottle)]


def _record(plan, *, held: int | None, why: str = "") -> None:
    (Path(plan.state_dir) / RECORD).write_text(json.dumps({"held": held, "why": why}))


def forget(plan) -> None:
    """A run starts: the last stop's record says nothing of what this run will leave."""
    (Path(plan.state_dir) / RECORD).unlink(missing_ok=True)


def _recorded(plan) -> dict | None:
    try:
        return json.loads((Path(plan.state_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def describe(plan) -> dict[str, str] | None:
    """``bottle ls``'s columns: where the bottle pushes, and how many commits only it holds (? unknown)."""
    from bottle_git.section import GitPlan

    git = plan.section(GitPlan)
    if git is None:
        return None
    record = _recorded(plan)
    held = record.get("held") if record else None
    return {"repository": git.upstream, "branch": git.work_branch, "unsaved": "?" if held is None else str(held)}


def unsaved(plan) -> list[str] | None:
    """What of the agent's work only this bottle holds, for ``bottle rm`` and ``prune``."""
    from bottle_git.section import GitPlan

    if plan.section(GitPlan) is None:
        return None
    record = _recorded(plan)
    if record is None:
        return [f"what its working copy holds is unknown: its last run did not end through bottle (killed?), "
                "so nothing was saved"]
    held = record.get("held")
    if held == 0:
        return None
    count = "its commits" if held is None else f"{held} commit{'' if held == 1 else 's'}"
    return [f"{count} the git gate did not take ({record.get('why') or 'no reason recorded'})"]


def _why(result) -> str:
    """The gate's own reason when it refused (git relays it as ``remote: REF: refused: WHY``), else git's last
    line: one line, escaped (ref names and paths are the agent's)."""
    lines = [line.strip() for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    reasons = [line.split(": refused: ", 1)[1] for line in lines if ": refused: " in line]
    said = reasons or lines[-1:]
    return terminal_safe(said[0]) if said else f"exit code {result.exit_code}"


def keep(plan, bottle) -> list[str]:
    """The working copy as a tar in the state dir, when the gate would not take it."""
    size = bottle.exec(["du", "-sb", plan.guest.workdir])
    try:
        total = int(size.stdout.split()[0])
    except (IndexError, ValueError):
        total = None
    if total is None or total > KEEP_LIMIT:
        return [f"{plan.guest.workdir} ({total or '?'} bytes) is too large to keep; nothing was saved"]
    archive = bottle.exec(["tar", "-C", plan.guest.workdir, "-cf", "-", "."])
    if archive.exit_code != 0:
        return [f"keeping {plan.guest.workdir} failed: {terminal_safe(archive.stderr.decode(errors='replace'))}"]
    path = Path(plan.state_dir) / KEPT
    path.touch(mode=0o600)
    path.write_bytes(archive.stdout)
    return [f"the whole working copy, .git included, is kept in {path} (tar -xf {shlex.quote(str(path))})"]


def report(lines: list[str]) -> None:
    for line in lines:
        print(f"bottle: {line}", file=sys.stderr)
