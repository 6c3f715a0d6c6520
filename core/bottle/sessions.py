"""A bottle outlives its run: what its state dir keeps, so that ``ls``, ``resume``, ``rm`` and ``prune`` can read it.

A run ends by stopping the bottle (the backend removes what runs and keeps
the agent's home and workdir); its state dir keeps the plan, the audit log
and ``inputs.json``: what ``bottle run`` was asked (the agent file, the
repository, the options), from which ``bottle resume`` plans the same bottle
again, with the profile and agent as they are now. A state dir without a
plan is not a bottle's (plugins keep files shared by all bottles in the state root).
"""

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from bottle import paths
from bottle.errors import UsageError

INPUTS = "inputs.json"
PLAN = "plan.json"
#: A name the user gives a bottle (``--name``): it is the slug, in resource names and labels.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


@dataclass(frozen=True)
class Inputs:
    """What ``bottle run`` was asked: enough to plan the same bottle again."""

    agent: str  #: the agent file, as found at the first run
    repo: str | None = None
    backend: str | None = None
    image: str | None = None
    created: float = 0.0  #: when the bottle was first run (seconds since the epoch)

    def write(self, state_dir: Path) -> None:
        (state_dir / INPUTS).write_text(json.dumps(self.__dict__, indent=2), encoding="utf-8")

    @classmethod
    def read(cls, state_dir: Path) -> "Inputs":
        data = json.loads((state_dir / INPUTS).read_text(encoding="utf-8"))
        return cls(**{key: data.get(key) for key in ("agent", "repo", "backend", "image")},
                   created=float(data.get("created") or 0))


@dataclass(frozen=True)
class StoredBottle:
    """One bottle's state dir, as the commands that work on stopped bottles see it."""

    slug: str
    state_dir: Path

    @functools.cached_property
    def inputs(self) -> Inputs:
        return Inputs.read(self.state_dir)

    def plan(self):
        """Its last run's plan, read back (plugins' sections as their own classes)."""
        from bottle.plan import Plan

        return Plan.model_validate_json((self.state_dir / PLAN).read_text(encoding="utf-8"))

    @property
    def last_used(self) -> float:
        """When its last run started or ended, whichever is later (the state dir's files say)."""
        times = [path.stat().st_mtime for path in (self.state_dir / PLAN, self.state_dir / "timings.json")
                 if path.exists()]
        return max(times, default=self.state_dir.stat().st_mtime)


def stored_bottles(root: Path | None = None) -> list[StoredBottle]:
    """Every bottle whose state dir is under *root* (the state root), oldest first."""
    root = root or paths.state_root()
    if not root.is_dir():
        return []
    found = [StoredBottle(path.name, path) for path in root.iterdir()
             if (path / PLAN).is_file() and (path / INPUTS).is_file()]
    return sorted(found, key=lambda stored: stored.inputs.created)


def stored(slug: str) -> StoredBottle:
    """The bottle *slug*, or a usage error naming where bottle looked."""
    root = paths.state_root()
    path = root / slug
    if "/" in slug or slug in ("", ".", "..") or not (path / PLAN).is_file() or not (path / INPUTS).is_file():
        raise UsageError(f"No bottle {slug!r} in {root} (see `bottle ls`).")
    return StoredBottle(slug, path)


def check_name(name: str) -> str:
    """A ``--name`` that can be a slug, or a usage error saying what one is."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"Option --name: {name!r} is not a bottle name: 1 to 40 of a-z, 0-9, '_', '.', '-', "
                         "starting with a letter or digit.")
    if (paths.state_root() / name).exists():
        raise UsageError(f"Option --name: there is a bottle {name!r} already (`bottle resume {name}` goes on "
                         f"with it, `bottle rm {name}` deletes it).")
    return name


def age(seconds_ago: float) -> str:
    """``3m``, ``5h``, ``2d``: how long ago, as ``ls`` shows it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds_ago >= size:
            return f"{int(seconds_ago // size)}{unit}"
    return f"{max(int(seconds_ago), 0)}s"


def parse_duration(text: str, option: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` in seconds, or a usage error naming *option*."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise UsageError(f"Option {option}: {text!r} is not a duration: a number and s, m, h or d (7d, 12h).")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
