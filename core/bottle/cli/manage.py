"""``bottle ls / stop / gc / exec``: find running bottles by label, from any process."""

import os
import socket
import sys
from typing import List

import typer


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


def _find(slug: str):
    from bottle.errors import UsageError

    for backend, info in all_bottles():
        if info.slug == slug:
            return backend, info
    raise UsageError(f"No bottle {slug!r}: `bottle ls` lists the running ones.")


def ls(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List bottles on this machine (any backend), including leftovers of crashed runs."""
    from bottle.cli.common import print_json

    infos = [info for _, info in all_bottles()]
    if as_json:
        print_json(infos)
        return
    if not infos:
        print("no bottles")
        return
    print(f"{'SLUG':28} {'AGENT':16} {'BACKEND':8} {'STATUS':12} LAUNCHER")
    for info in infos:
        print(f"{info.slug:28} {info.agent:16} {info.backend:8} {info.status:12} pid {info.launcher_pid} on {info.launcher_host}")


def stop(slug: str = typer.Argument(..., help="The bottle's slug (see `bottle ls`).")) -> None:
    """Stop a bottle and remove everything it holds (its run then ends)."""
    backend, _ = _find(slug)
    backend.remove(slug)
    print(f"stopped {slug}")


def _launcher_gone(info) -> bool:
    if info.launcher_host != socket.gethostname() or info.launcher_pid is None:
        return False
    try:
        os.kill(info.launcher_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def gc(
    everything: bool = typer.Option(False, "--all", help="Also remove bottles whose `bottle run` is still alive."),
    as_json: bool = typer.Option(False, "--json", help="Print the removed slugs as JSON."),
) -> None:
    """Remove what crashed runs left behind: bottles whose `bottle run` process is gone."""
    from bottle.cli.common import print_json

    removed = []
    for backend, info in all_bottles():
        if everything or _launcher_gone(info):
            backend.remove(info.slug)
            removed.append(info.slug)
    if as_json:
        print_json({"removed": removed})
    else:
        print("\n".join(f"removed {slug}" for slug in removed) or "nothing to remove")


def exec_(
    slug: str = typer.Argument(..., metavar="SLUG", help="The bottle's slug (see `bottle ls`)."),
    command: List[str] = typer.Argument(..., metavar="-- COMMAND...", help="Command to run, after `--`."),
    root: bool = typer.Option(False, "--root", help="Run as root instead of the agent's user."),
) -> None:
    """Run a command in a running bottle: bottle exec SLUG -- bash"""
    backend, _ = _find(slug)
    raise typer.Exit(backend.exec_interactive(slug, command, user="root" if root else None))
