"""The operator's side of supervise: list what bottled agents ask for, and answer.

Shared by ``bottle proposals``, ``bottle answer`` and the ``bottle supervise``
TUI. An answer is final once written, and the waiting supervise server returns
it to the agent at once; so whatever an approval grants is done first: an
approved egress request is on the bottle's live allowlist before the agent
hears "approved".
"""

import os
import time
from pathlib import Path

from bottle import egress_control
from bottle.display import terminal_safe
from bottle.errors import UsageError
from bottle.sidecar.policy import RuleError, parse_rule
from bottle.sidecar.proposals import Proposal, ProposalError, Queue
from bottle.sidecar_runtime import hand_over

QUEUE_DIR = "supervise"
QUEUE_FILE = "queue.sqlite"
STATUS = {"approve": "approved", "modify": "modified", "reject": "rejected"}


def prepare_queue(state_root: Path) -> Path:
    """The directory holding the queue (created, with the queue, if missing):
    what a bottle's sidecar gets bind-mounted. It is the sidecars' user's alone
    (0700): the operator's, or the sidecar user's when bottle runs as root
    (``sidecar_user``; root answers all the same). No other local user may
    read the asks or, worse, answer them."""
    directory = Path(state_root) / QUEUE_DIR
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    Queue(directory / QUEUE_FILE)
    hand_over([directory, *directory.iterdir()])
    return directory


def list_proposals(state_root: Path) -> list[dict]:
    """The pending proposals of every bottle, oldest first (none before the first bottle asked)."""
    path = Path(state_root) / QUEUE_DIR / QUEUE_FILE
    if not path.exists():
        return []
    return [proposal.as_dict() for proposal in Queue(path).pending()]


def answer(state_root: Path, proposal_id: int, decision: str, note: str = "", host: str | None = None) -> dict:
    """Answer proposal *proposal_id*: *decision* is approve, reject or modify
    (approve an egress request for *host* instead of the one asked for)."""
    if decision not in STATUS:
        raise UsageError(f"Argument DECISION: {decision!r} is not one of {', '.join(STATUS)}.")
    if (decision == "modify") != (host is not None):
        raise UsageError("Argument --host: give a host to allow instead exactly when modifying (approving with --host).")
    queue = Queue(prepare_queue(state_root) / QUEUE_FILE)
    proposal = _pending(queue, proposal_id)
    value = None
    if proposal.kind == "egress" and decision != "reject":
        value = proposal.what if host is None else _rule(host)
        egress_control.change_allowlist(proposal.bottle, value, allow=True)
    elif host is not None:
        raise UsageError(f"Argument --host: proposal {proposal_id} asks for a {proposal.kind}, not a host.")
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


def _rule(host: str) -> str:
    try:
        return parse_rule(host).text
    except RuleError as err:
        raise UsageError(f"Argument --host: {err}") from None


def age(created: float) -> str:
    """Seconds, minutes, hours or days since *created*, in at most four characters."""
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
