"""How much of the machine a bottle may use: bottle's built-in limits, and a profile's own.

A profile's ``cpus``, ``memory``, ``pids`` and ``disk`` each set a limit, or
lift it with ``"unlimited"``. A field no profile in the chain sets takes the
built-in default, sized from the machine the plan is made on, so that an agent
that runs away (a fork bomb, a leak, a download that never ends) stops at the
bottle's edge and the host goes on answering:

- ``memory``: half the host's RAM, at most 8 GiB, and no swap on top (a
  bottle that swaps slows everything else). Half leaves the host room; the
  cap keeps a big machine that runs several bottles from promising each of
  them most of it. An agent's CLI needs a few hundred MiB; the rest is for what
  the agent builds and runs.
- ``cpus``: every core but one, at least one: a bottle busy on all it may use
  leaves the host a core to answer on.
- ``pids``: 1024 processes and threads. The agent, a build with a job per
  core and a test runner's workers fit several times over; a fork bomb stops
  there, far below the kernel's ``pid_max``.
- ``disk``: 20 GiB of what the agent writes. How a backend holds a bottle to
  it depends on the engine's storage: see :meth:`bottle.backend.Backend.disk_bound`
  (``bottle doctor`` says which applies here).
"""

import os
from dataclasses import dataclass

from bottle.errors import UsageError
from bottle.manifests.profile import UNLIMITED, Profile
from bottle.plan import Resources

MiB = 1024**2
GiB = 1024**3
MEMORY_CAP = 8 * GiB
MEMORY_SHARE = 2  # the default is 1/MEMORY_SHARE of the host's RAM, up to MEMORY_CAP
DEFAULT_PIDS = 1024
DEFAULT_DISK = "20g"
_UNITS = {"b": 1, "k": 1024, "m": MiB, "g": GiB}


@dataclass(frozen=True)
class Host:
    """What the defaults are sized from."""

    cores: int
    memory: int  # bytes of RAM

    @classmethod
    def this_one(cls) -> "Host":
        """This machine: the cores this process may run on, and its physical memory."""
        return cls(len(os.sched_getaffinity(0)), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def built_in(host: Host) -> Resources:
    """Bottle's default limits on *host* (see the module's docstring for why these)."""
    memory = min(MEMORY_CAP, host.memory // MEMORY_SHARE)
    return Resources(
        cpus=float(max(1, host.cores - 1)),
        memory=f"{max(1, memory // MiB)}m",
        pids=DEFAULT_PIDS,
        disk=DEFAULT_DISK,
    )


def resources(profile: Profile, host: Host | None = None) -> Resources:
    """The limits a bottle of *profile* gets: the profile's, else the built-in ones; None where lifted.

    More CPUs than the host has would pass here and fail at the engine, after
    the network and sidecar exist, with the engine's words: it is refused now.
    """
    host = host or Host.this_one()
    if isinstance(profile.cpus, float) and profile.cpus > host.cores:
        where = ", ".join(map(str, profile.files)) or f"profile {profile.name!r}"
        raise UsageError(
            f"{where}: field `cpus`: {profile.cpus:g} is more than the {host.cores} this machine has; "
            'set at most that, or "unlimited".'
        )
    defaults = built_in(host)
    chosen = {}
    for field in Resources.model_fields:
        value = getattr(profile, field)
        chosen[field] = getattr(defaults, field) if value is None else None if value == UNLIMITED else value
    return Resources(**chosen)


def size_bytes(spec: str) -> int:
    """A size as profiles write it (``512m``, ``4g``, ``100k``, ``1024``: bytes) in bytes."""
    unit = spec[-1].lower()
    return int(spec[:-1]) * _UNITS[unit] if unit in _UNITS else int(spec)
