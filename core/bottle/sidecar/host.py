"""Where a bottle's sidecar runs: an interface, so that launch owns the order whatever runs the sidecar.

Launch asks the backend for the bottle's internal network, starts the sidecar
on it through a :class:`SidecarHost` (it starts in the background while the
backend creates the sandbox), hands the backend the :class:`StartedSidecar`
(a backend that needs the sidecar's address, such as a microVM's, asks it),
then waits until it is ready before provisioning. The Docker implementation is
``bottle.sidecar.runtime.DockerSidecarHost``; a backend that places its
sidecar elsewhere (a Kubernetes Pod beside the sandbox's) returns its own from
``Backend.sidecar_host``.
"""

import abc
import contextlib
from collections.abc import Callable

from bottle.plan import Plan
from bottle.sidecar.service import SidecarSetup


class StartedSidecar(abc.ABC):
    """A sidecar that was asked to start; each method waits for the start to end (raising what it raised)."""

    @abc.abstractmethod
    def address(self, network: str) -> str:
        """Its address on *network*: for a guest that cannot resolve its hostname (a microVM's)."""

    @abc.abstractmethod
    def wait_ready(self) -> None:
        """Block until every one of its services answers."""

    @abc.abstractmethod
    def failure(self) -> str | None:
        """Why it stopped on its own, if it did (its last words); None while it runs or when it never started."""

    @abc.abstractmethod
    def settle(self) -> None:
        """Wait for the start to end, whichever way, before teardown: nothing is left starting behind its back."""


class SidecarHost(abc.ABC):
    """Starts a bottle's sidecar with what the plugins prepare for it."""

    @abc.abstractmethod
    def start(self, plan: Plan, prepare: Callable[[], SidecarSetup], network: str,
              stack: contextlib.ExitStack) -> StartedSidecar:
        """Start the sidecar on *network* without waiting for it, with what *prepare* returns (the plugins'
        ``bottle_sidecar_prepare``: a CA made, secrets read), called as part of the start so that it overlaps
        the sandbox's creation too; register the teardown of all of it on *stack*."""
