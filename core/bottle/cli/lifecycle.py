"""``bottle resume / rm / prune``: go on with a stopped bottle, or delete it once nothing of the agent's work is lost."""

import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from bottle.cli.common import SLUG
from bottle.cli.manage import Found, every_bottle, find, stop_running
from bottle.cli.run import PUBLISH

#: Plan fields whose change is the resume itself, not the user's: never shown as a difference.
NOT_DIFFERENCES = ("labels.bottle.pid", "labels.bottle.host", "notes", "resume", "headless", "agent_argv", "files",
                   "publish")


def _flat(data, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((str(index), value) for index, value in enumerate(data))
    else:
        return {prefix: repr(data)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differences(before, after) -> list[str]:
    """What changed between two plans of one bottle (the profile or the agent edited since), a line each."""
    old, new = _flat(before.model_dump(mode="json")), _flat(after.model_dump(mode="json"))
    lines = []
    for key in sorted(set(old) | set(new)):
        if any(key == skip or key.startswith(f"{skip}.") for skip in NOT_DIFFERENCES) or old.get(key) == new.get(key):
            continue
        if key == "system_prompt":
            lines.append("the agent's prompt changed")
            continue
        shown = [value if len(value) <= 60 else f"{value[:57]}..." for value in (old.get(key, "(none)"),
                                                                             new.get(key, "(none)"))]
        lines.append(f"{key}: {shown[0]} -> {shown[1]}")
    return lines


def resume(
    slug: str = SLUG,
    claude_args: Optional[List[str]] = typer.Argument(None, help="Extra arguments for the agent's command, after `--`.", show_default=False),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Go on headless with this prompt."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and what changed since the last run; start nothing."),
    timings: bool = typer.Option(False, "--timings", help="After the run, print when each step started and how long it took."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: the plan as JSON. With --timings: the timings as JSON."),
    publish: Optional[List[str]] = PUBLISH,
) -> None:
    """Go on with a stopped bottle: the same slug, home, workdir, profile and branch, a fresh sidecar, and the agent
    going on with its conversation. The profile and agent are read again; what changed is shown. A running
    bottle gets a new interactive session instead.

    Example: bottle resume reviewer-1a2b3c --prompt "go on"
    """
    from bottle.cli.common import settings_and_plugins
    from bottle.cli.run import published, start
    from bottle.display import terminal_safe
    from bottle.errors import EnvironmentProblem, UsageError
    from bottle.prepare import build_plan

    bottle = find(slug)
    if bottle.stored is None:
        raise UsageError(f"Bottle {slug!r} has no state dir here (it was run by another user, or its state was "
                         "deleted): there is nothing to resume it from.")
    previous, inputs = bottle.plan, bottle.stored.inputs
    if previous is None:
        raise UsageError(f"Bottle {slug!r}: its plan ({bottle.stored.state_dir}/plan.json) cannot be read by this "
                         "bottle; `bottle rm` deletes it.")
    if bottle.status == "gone":
        raise EnvironmentProblem(f"Bottle {slug!r} has nothing left on its backend (its home and workdir were "
                                 f"removed outside bottle); `bottle rm {slug}` deletes its record.")
    settings, plugins = settings_and_plugins(image=inputs.image)
    plan = build_plan(inputs.agent, settings=settings, plugins=plugins, headless_prompt=prompt, backend=inputs.backend,
                      agent_args=tuple(claude_args or ()), repo=inputs.repo and Path(inputs.repo), previous=previous,
                      publish=published(publish))
    if bottle.status == "running":
        if dry_run:
            print(f"bottle {slug} is running: resume would start a new session in it: {' '.join(plan.agent_argv)}")
            return
        print(f"bottle: {slug} is running: a new session in it", file=sys.stderr)
        raise typer.Exit(bottle.backend.exec_interactive(slug, list(plan.agent_argv), user=None))
    for line in differences(previous, plan):
        print(f"bottle: since its last run: {terminal_safe(line)}", file=sys.stderr)
    if bottle.status == "crashed" and not dry_run:
        bottle.backend.stop(slug)
        print(f"bottle: {slug}'s last run was killed; what it left running is stopped first (nothing of its "
              "home and workdir is lost)", file=sys.stderr)
    start(plan, plugins, dry_run=dry_run, as_json=as_json, timings=timings)


def unsaved_work(bottle: Found, plugins) -> list[str]:
    """What only *bottle* holds of the agent's work, as its plugins say (unknown counts as unsaved)."""
    plan = bottle.plan
    if plan is None:
        return ["its plan cannot be read, so nothing can say whether its work was saved"]
    return [line for result in plugins.hook.bottle_unsaved_work(plan=plan) for line in (result or [])]


def delete(bottle: Found) -> None:
    """Remove everything of *bottle*: on its backend (volumes included), then its state dir."""
    if bottle.backend is not None:
        bottle.backend.remove(bottle.slug)
    if bottle.stored is not None:
        shutil.rmtree(bottle.stored.state_dir)


def rm(
    slugs: List[str] = typer.Argument(..., metavar="SLUG...", help="The bottles to delete (see `bottle ls`)."),
    force: bool = typer.Option(False, "--force", "-f", help="Delete even a running bottle, or one whose work is "
                               "not saved (it is lost)."),
) -> None:
    """Delete stopped bottles: their home, workdir and state dir. Refuses a running one, and one holding work
    nothing else does (as its plugins say; a run killed before they could look counts), unless --force; says what
    would be lost."""
    from bottle.cli.common import loaded_plugins
    from bottle.display import terminal_safe

    plugins, refused, everyone = loaded_plugins(), False, every_bottle()  # the backends asked once
    for bottle in [find(slug, everyone) for slug in dict.fromkeys(slugs)]:
        if bottle.status in ("running", "crashed") and not force:
            print(f"bottle: not removing {bottle.slug}: it is {bottle.status} (`bottle stop {bottle.slug}` first, "
                  "or --force)", file=sys.stderr)
            refused = True
            continue
        lost = unsaved_work(bottle, plugins)
        if lost and not force:
            print(f"bottle: not removing {bottle.slug}: it holds work nothing else does:", file=sys.stderr)
            for line in lost:
                print(f"bottle:   {terminal_safe(line)}", file=sys.stderr)
            print(f"bottle: `bottle resume {bottle.slug}` goes on with it; --force deletes it anyway", file=sys.stderr)
            refused = True
            continue
        if bottle.status in ("running", "crashed"):
            stop_running(bottle)
        delete(bottle)
        print(f"removed {bottle.slug}")
    if refused:
        raise typer.Exit(1)


def prune(
    older_than: str = typer.Option("7d", "--older-than", help="Only bottles last used longer ago than this (30m, 12h, 7d)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print what was (or would be) removed and kept as JSON."),
) -> None:
    """Delete old stopped bottles, except those holding work nothing else does (`bottle rm --force` deletes those)."""
    from bottle.cli.common import loaded_plugins, print_json
    from bottle.display import terminal_safe
    from bottle.sessions import parse_duration

    limit = time.time() - parse_duration(older_than, "--older-than")
    plugins = loaded_plugins()
    removed, kept = [], {}
    for bottle in every_bottle():
        if bottle.status not in ("stopped", "gone") or bottle.stored is None or bottle.stored.last_used > limit:
            continue
        lost = unsaved_work(bottle, plugins)
        if lost:
            kept[bottle.slug] = lost
            continue
        if not dry_run:
            delete(bottle)
        removed.append(bottle.slug)
    if as_json:
        print_json({"removed": removed, "kept": kept, "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    for slug in removed:
        print(f"{verb} {slug}")
    for slug, lost in kept.items():
        print(terminal_safe(f"kept {slug}: {'; '.join(lost)}"))
    if not removed and not kept:
        print(f"no stopped bottle last used more than {older_than} ago")


def logs(
    slug: str = SLUG,
    stderr: bool = typer.Option(False, "--stderr", help="Print what the agent wrote to stderr instead of stdout."),
) -> None:
    """Print what the agent of a headless run (--prompt) printed, in the bottle's last run, as it printed it (to a
    terminal, with its control characters shown as escapes: the agent wrote it)."""
    from bottle.display import terminal_safe
    from bottle.errors import UsageError
    from bottle.sessions import stored
    from bottle.transcript import log_path

    path = log_path(stored(slug).state_dir, "stderr" if stderr else "stdout")
    if not path.is_file():
        raise UsageError(f"Bottle {slug!r} kept no output: its last run was interactive, or never got to its agent.")
    data = path.read_bytes()
    if sys.stdout.isatty():
        for line in data.decode(errors="replace").splitlines():
            print(terminal_safe(line))
    else:
        sys.stdout.buffer.write(data)
