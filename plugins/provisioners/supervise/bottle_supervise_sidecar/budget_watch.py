"""A spent budget becomes a proposal: "raise the budget to N tokens", which the operator can approve live.

The egress proxy refuses a Messages request that would start past the
bottle's budget and writes why to the audit log (``blocked``, check
``budget``). This thread reads the log's new rows every :data:`POLL` seconds
and, for such a refusal while no budget proposal of this bottle waits, files
one. It waits for no answer: approving it raises the budget in the bottle's
egress policy (the egress plugin's ``bottle_supervise_grant``), and the
agent's next request goes through, without a restart. A budget in dollars
only is not proposed here (``bottle egress budget SLUG --max-usd`` raises
it): the proposal's value is a number of tokens.
"""

import threading

from bottle_sidecar.audit import last_id, read_events

POLL = 1.0
KIND = "budget"


def suggestion(detail: dict) -> int | None:
    """The budget to propose: room for as many tokens again as the budget held, at least double it."""
    limit, used = detail.get("max_tokens"), detail.get("tokens")
    if not isinstance(limit, int) or not isinstance(used, int):
        return None
    return max(2 * limit, used + limit)


class BudgetWatch(threading.Thread):
    def __init__(self, supervisor, audit_path: str, poll: float = POLL):
        super().__init__(daemon=True, name="budget-watch")
        self.supervisor, self.audit_path, self.poll = supervisor, audit_path, poll
        self.stopped = threading.Event()
        self.since = last_id(audit_path)  # what came before the server started was answered by its own run

    def run(self) -> None:
        since = self.since
        while not self.stopped.wait(self.poll):
            for event in read_events(self.audit_path, decision="blocked", since_id=since):
                since = event["id"]
                detail = event["detail"] or {}
                if (event["source"], detail.get("check")) == ("egress", KIND):
                    self.propose(detail)

    def propose(self, detail: dict) -> None:
        supervisor = self.supervisor
        waiting = [p for p in supervisor.queue.pending() if p.bottle == supervisor.bottle and p.kind == KIND]
        value = suggestion(detail)
        if waiting or value is None:
            return
        reason = (f"the bottle's budget of {detail['max_tokens']} tokens is spent ({detail['tokens']} used); "
                  f"approving raises it to {value} tokens")
        proposal_id = supervisor.queue.propose(supervisor.bottle, supervisor.agent, KIND, str(value), reason,
                                               supervisor.max_pending)
        supervisor._record(supervisor.queue.get(proposal_id), "proposed", reason)
