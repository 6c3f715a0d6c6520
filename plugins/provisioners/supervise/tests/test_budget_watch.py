"""A spent budget becomes one proposal (``bottle_supervise_sidecar.budget_watch``), and a queue an older bottle
made takes the new kind (``proposals.Queue``'s migration); real SQLite, real audit log."""

import sqlite3
import time
from types import SimpleNamespace

from bottle_sidecar.audit import AuditLog
from bottle_supervise_sidecar.budget_watch import BudgetWatch, suggestion
from bottle_supervise_sidecar.proposals import Queue

OLD_SCHEMA = """
CREATE TABLE proposals (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, bottle TEXT NOT NULL, agent TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('egress', 'capability', 'blocked')),
    what TEXT NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'modified', 'rejected', 'expired')),
    answer_note TEXT NOT NULL DEFAULT '', answer_value TEXT, answered_at REAL
);
"""


def test_a_queue_an_older_bottle_made_takes_budget_proposals_and_keeps_its_rows(tmp_path):
    path = tmp_path / "queue.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO proposals (created, bottle, agent, kind, what, reason) VALUES (1, 'b-1', 'a', 'egress', "
               "'pypi.org', 'pip')")
    db.commit()
    db.close()

    queue = Queue(path)
    queue.propose("b-2", "a", "budget", "4000", "spent", 5)

    assert [(p.bottle, p.kind, p.what) for p in queue.pending()] == [("b-1", "egress", "pypi.org"), ("b-2", "budget", "4000")]
    Queue(path)  # opened again: nothing to migrate, nothing lost
    assert len(queue.pending()) == 2


def test_a_budget_refusal_files_one_proposal_while_none_waits(tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite", "b-1")
    queue = Queue(tmp_path / "queue.sqlite")
    recorded = []
    supervisor = SimpleNamespace(queue=queue, bottle="b-1", agent="coder", max_pending=5,
                                 _record=lambda proposal, decision, reason: recorded.append((proposal.id, decision)))
    audit.record("egress", "metered", detail={"input_tokens": 10})
    watch = BudgetWatch(supervisor, str(tmp_path / "audit.sqlite"), poll=0.05)
    watch.start()
    try:
        for _ in range(2):  # the agent asks twice; one proposal waits
            audit.record("egress", "blocked", reason="spent",
                         detail={"check": "budget", "tokens": 1300, "max_tokens": 1000, "per": "bottle"})
        audit.record("egress", "blocked", detail={"check": "allowlist"})
        deadline = time.monotonic() + 10
        while not queue.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        watch.stopped.set()
        watch.join(5)
        audit.close()

    (proposal,) = queue.pending()
    assert (proposal.bottle, proposal.agent, proposal.kind, proposal.what) == ("b-1", "coder", "budget", "2300")
    assert "budget of 1000 tokens is spent (1300 used); approving raises it to 2300 tokens" in proposal.reason
    assert recorded == [(proposal.id, "proposed")]


def test_the_suggestion_leaves_room_for_as_much_again():
    assert suggestion({"max_tokens": 1000, "tokens": 1300}) == 2300
    assert suggestion({"max_tokens": 1000, "tokens": 100}) == 2000
    assert suggestion({"max_usd": 5, "tokens": 100}) is None
