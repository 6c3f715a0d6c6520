"""``bottle ls / stop / gc / exec``: every bottle on this machine, running or stopped, from any process.

A bottle is what the backends find by label (what runs, and its durable
volumes) joined with its state dir (``bottle.sessions``). Its status:

* ``running``: its ``bottle run`` (or ``resume``) is alive;
* ``crashed``: something of it runs, but the process that ran it is gone
  (killed); ``bottle resume`` goes on with it, ``bottle gc`` stops it;
* ``stopped``: nothing runs; its home and workdir are kept;
* ``gone``: only its state dir is left (its volumes were removed outside
  bottle): its record, which ``bottle rm`` deletes.
"""

import functools
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import List

import typer

from bottle.cli.common import SLUG

#: Seconds ``bottle stop`` waits for a run to end (it saves the agent's work first, which may take 120 s).
STOP_WAIT = 180


def all_bottles():
    """Every bottle of every backend that answers, as (backend, info).

    "No bottles" must mean there are none, not that bottle could not look: with
    no backend answering this fails, naming each one and why; with some
    answering, it warns on stderr about the others, whose bottles it cannot see.
    """
    from bottle.cli.common import settings_and_plugins
    from bottle.errors import EnvironmentProblem

    _, loaded = settings_and_plugins()
    available, unavailable = [], {}
    for name, backend in sorted(loaded.backends.items()):
        availability = backend.availability()
        if availability.ok:
            available.append(backend)
        else:
            unavailable[name] = availability.reason
    if not available:
        reasons = "".join(f"\n  {name}: {reason}" for name, reason in unavailable.items())
        raise EnvironmentProblem(
            f"No backend answers, so bottle cannot see any bottle:{reasons or ' none is installed (see `bottle plugins`).'}"
        )
    for name in unavailable:
        print(f"bottle: backend {name!r} cannot run here, so its bottles are not seen (`bottle doctor` says why).",
              file=sys.stderr)
    return [(backend, info) for backend in available for info in backend.list()]


@dataclass
class Found:
    """One bottle: what a backend lists of it (None: nothing), its state dir (None: none), its status."""

    slug: str
    status: str
    backend: object = None
    info: object = None
    stored: object = None

    @functools.cached_property
    def plan(self):
        """Its last run's plan, or None when its state dir has none that this bottle reads (read once)."""
        if self.stored is None:
            return None
        try:
            return self.stored.plan()
        except (OSError, ValueError):
            return None


def launcher_alive(info) -> bool | None:
    """Whether the ``bottle`` process that runs *info*'s bottle is alive; None: it runs on another host."""
    if info.launcher_host != socket.gethostname() or info.launcher_pid is None:
        return None
    try:
        os.kill(info.launcher_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(info.launcher_pid)


def _zombie(pid: int) -> bool:
    """An ended process its parent has not reaped yet: it answers signals, but runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _status(info) -> str:
    if info.status == "stopped":
        return "stopped"
    return "crashed" if launcher_alive(info) is False else "running"


def every_bottle() -> list[Found]:
    """Every bottle, the backends' and the state dirs', oldest first."""
    from bottle.sessions import stored_bottles

    listed = {info.slug: (backend, info) for backend, info in all_bottles()}
    found = []
    for stored in stored_bottles():
        backend, info = listed.pop(stored.slug, (None, None))
        found.append(Found(stored.slug, _status(info) if info else "gone", backend, info, stored))
    found += [Found(slug, _status(info), backend, info) for slug, (backend, info) in listed.items()]
    return found


def find(slug: str, bottles: list[Found] | None = None) -> Found:
    """Bottle *slug* among *bottles* (default: every bottle, asked of the backends now)."""
    from bottle.errors import UsageError

    for bottle in every_bottle() if bottles is None else bottles:
        if bottle.slug == slug:
            return bottle
    raise UsageError(f"No bottle {slug!r}: `bottle ls` lists them.")


def _details(plan, plugins) -> dict[str, str]:
    details: dict[str, str] = {}
    if plan is not None:
        for result in plugins.hook.bottle_describe(plan=plan):
            details.update(result or {})
    return details


def ls(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the bottles on this machine (any backend), running or stopped, with what each holds of the agent's
    work (the plugins' columns: where it pushes, what only it holds, what waits for an answer)."""
    from bottle.cli.common import loaded_plugins, print_json
    from bottle.display import terminal_safe
    from bottle.sessions import age

    plugins = loaded_plugins()
    rows = []
    for bottle in every_bottle():
        info, stored, plan = bottle.info, bottle.stored, bottle.plan
        created = stored.inputs.created if stored else None
        rows.append({
            "slug": bottle.slug, "status": bottle.status,
            "agent": plan.agent if plan else (info.agent if info else ""),
            "backend": info.backend if info else "",
            "created": created, "last_used": stored.last_used if stored else None,
            "launcher_pid": info.launcher_pid if info else None, "launcher_host": info.launcher_host if info else "",
            "state_dir": str(stored.state_dir) if stored else None,
            "details": _details(plan, plugins) if plan else {},
        })
    if as_json:
        print_json(rows)
        return
    if not rows:
        print("no bottles")
        return
    columns = list(dict.fromkeys(key for row in rows for key in row["details"]))
    now = time.time()
    print(" ".join([f"{'SLUG':28}", f"{'STATUS':8}", f"{'AGE':>4}", f"{'AGENT':16}", *(c.upper() for c in columns)]))
    for row in rows:
        when = age(now - row["last_used"]) if row["last_used"] else "?"
        cells = [f"{row['slug']:28}", f"{row['status']:8}", f"{when:>4}", f"{row['agent']:16}",
                 *(row["details"].get(column, "-") for column in columns)]
        print(terminal_safe(" ".join(cells)))


def _looks_like_bottle(pid: int) -> bool:
    """A pid from a label may have been reused since: only a process that is a ``bottle`` gets the signal."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"bottle" in cmdline.read()
    except OSError:
        return False


def stop_running(bottle: Found) -> str:
    """Stop *bottle*: through its ``bottle run`` when that is alive here (SIGTERM: it saves the agent's work and
    stops as when the agent exits), else through its backend. Returns what was done, in a few words."""
    from bottle.errors import EnvironmentProblem

    info = bottle.info
    if bottle.status == "running" and launcher_alive(info) and _looks_like_bottle(info.launcher_pid):
        os.kill(info.launcher_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while launcher_alive(info) and time.monotonic() < deadline:
            time.sleep(0.2)
        if launcher_alive(info):
            raise EnvironmentProblem(f"bottle {bottle.slug}'s run (pid {info.launcher_pid}) did not end within "
                                     f"{STOP_WAIT} s of SIGTERM; `bottle gc --all` stops it without saving.")
        return "stopped"
    bottle.backend.stop(bottle.slug)
    return "stopped (its run was gone: nothing was saved)" if bottle.status == "crashed" else "stopped"


def stop(slug: str = SLUG) -> None:
    """Stop a bottle: its run ends as when the agent exits (the agent's work is saved); its home and workdir stay
    for `bottle resume`."""
    bottle = find(slug)
    if bottle.status in ("stopped", "gone"):
        print(f"{slug} is not running")
        return
    print(f"{slug} {stop_running(bottle)}")


def gc(
    everything: bool = typer.Option(False, "--all", help="Also stop bottles whose `bottle run` is still alive."),
    as_json: bool = typer.Option(False, "--json", help="Print the stopped slugs as JSON."),
) -> None:
    """Stop what crashed runs left running (bottles whose `bottle run` process is gone). It never deletes a
    bottle's home or workdir: `bottle rm` and `bottle prune` do, and refuse while work is unsaved."""
    from bottle.cli.common import print_json

    stopped = []
    for bottle in every_bottle():
        if bottle.status == "crashed" or (everything and bottle.status == "running"):
            bottle.backend.stop(bottle.slug)
            stopped.append(bottle.slug)
    if as_json:
        print_json({"stopped": stopped})
    else:
        print("\n".join(f"stopped {slug}" for slug in stopped) or "nothing to stop")


def exec_(
    slug: str = typer.Argument(..., metavar="SLUG", help="The bottle's slug (see `bottle ls`)."),
    command: List[str] = typer.Argument(..., metavar="-- COMMAND...", help="Command to run, after `--`."),
    root: bool = typer.Option(False, "--root", help="Run as root instead of the agent's user."),
) -> None:
    """Run a command in a running bottle: bottle exec SLUG -- bash"""
    from bottle.errors import UsageError

    bottle = find(slug)
    if bottle.backend is None or bottle.status in ("stopped", "gone"):
        raise UsageError(f"Bottle {slug!r} is {bottle.status}, not running (`bottle resume {slug}` starts it).")
    raise typer.Exit(bottle.backend.exec_interactive(slug, command, user="root" if root else None))
