"""The operator's side of supervise: list what bottled agents ask for, and answer.

Shared by ``bottle proposals``, ``bottle answer`` and the ``bottle supervise``
TUI. An answer is final once written, and the waiting supervise server returns
it to the agent at once; so whatever an approval grants is done first: an
approved egress request is on the bottle's live allowlist before the agent
hears "approved". The plugin that owns a kind of proposal does it, asked
through the hook supervise publishes (``bottle_supervise.hookspecs``), so
nothing here knows how a host is allowed.
"""

import time
from pathlib import Path

from bottle.display import terminal_safe
from bottle.errors import EnvironmentProblem, UsageError
from bottle.plugins import Plugins
from bottle_supervise_sidecar.proposals import Proposal, ProposalError, Queue
from bottle_supervise.section import QUEUE_DIR, QUEUE_FILE, prepare_queue

STATUS = {"approve": "approved", "modify": "modified", "reject": "rejected"}
#: Kinds whose approval means nothing until a plugin carries it out: with none
#: loaded to do it, approving one is refused (the agent would hear "approved" for nothing).
GRANTED_BY_PLUGINS = ("egress", "budget")


def list_proposals(state_root: Path) -> list[dict]:
    """The pending proposals of every bottle, oldest first (none before the first bottle asked)."""
    path = Path(state_root) / QUEUE_DIR / QUEUE_FILE
    if not path.exists():
        return []
    return [proposal.as_dict() for proposal in Queue(path).pending()]


def answer(state_root: Path, proposal_id: int, decision: str, note: str = "", host: str | None = None, *,
           plugins: Plugins) -> dict:
    """Answer proposal *proposal_id*: *decision* is approve, reject or modify
    (approve an egress request for *host* instead of the one asked for);
    *plugins* carry out what an approval grants."""
    if decision not in STATUS:
        raise UsageError(f"Argument DECISION: {decision!r} is not one of {', '.join(STATUS)}.")
    if (decision == "modify") != (host is not None):
        raise UsageError("Argument --host: give a host to allow instead exactly when modifying (approving with --host).")
    queue = Queue(prepare_queue(state_root) / QUEUE_FILE)
    proposal = _pending(queue, proposal_id)
    value = None if decision == "reject" else _grant(plugins, proposal, host)
    try:
        return queue.answer(proposal_id, STATUS[decision], note, value).as_dict()
    except ProposalError as err:  # it expired while the allowlist changed
        shown = value and terminal_safe(value)  # the agent's host, in a message for the operator's terminal
        undo = f"; {shown} stays allowed (`bottle egress deny {proposal.bottle} {shown}` undoes it)" if shown else ""
        raise UsageError(f"Argument ID: {err}{undo}.") from None


def _pending(queue: Queue, proposal_id: int) -> Proposal:
    try:
        proposal = queue.get(proposal_id)
    except ProposalError:
        raise UsageError(f"Argument ID: no proposal {proposal_id}; `bottle proposals` lists the pending ones.") from None
    if proposal.status != "pending":
        raise UsageError(f"Argument ID: proposal {proposal_id} was already answered: {proposal.status}.")
    return proposal


def _grant(plugins: Plugins, proposal: Proposal, host: str | None) -> str | None:
    """Carry out the approval of *proposal* (for *host*, if given) through the plugin that owns its kind;
    what was granted, or None for a kind no plugin carries out (the operator does, by hand)."""
    try:
        granted = plugins.hook.bottle_supervise_grant(
            bottle=proposal.bottle, kind=proposal.kind, value=proposal.what if host is None else host
        )
    except ValueError as err:
        where = "Argument --host" if host is not None else f"Argument ID: proposal {proposal.id}"
        raise UsageError(f"{where}: {terminal_safe(str(err))}") from None  # it may quote what the agent asked
    if granted is None and host is not None:
        raise UsageError(f"Argument --host: proposal {proposal.id} asks for a {proposal.kind}, not a host.")
    if granted is None and proposal.kind in GRANTED_BY_PLUGINS:
        raise EnvironmentProblem(
            f"No plugin grants {proposal.kind} proposals (bottle_supervise_grant), so proposal {proposal.id} "
            f"stays pending.{plugins.not_loaded()}"
        )
    return granted


def age(created: float) -> str:
    """Seconds, minutes, hours or days since *created*, in at most four characters."""
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
