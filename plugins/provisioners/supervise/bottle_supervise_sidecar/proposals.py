"""The proposal queue: what bottled agents ask for, and what the operator answers.

One SQLite file on the host, ``<state_root>/supervise/queue.sqlite``, holds the
proposals of every bottle: the operator's ``bottle supervise`` and ``bottle
proposals`` read one place, whichever bottles are running. Each sidecar gets
that directory bind-mounted and its supervise server writes proposals there,
then polls for the answer the host writes.

The sidecar's user and the operator's are different users writing one file:
the host creates it 0666 in a 0777 directory, and SQLite gives the ``-wal``
and ``-shm`` files it makes the database's own mode, so either side may create
them. WAL lets both read while the other writes; the busy timeout rides out
the other side's short write locks.

Only the host's answer has an effect (it widens the allowlist before writing
the answer), so a sidecar that wrote an answer itself would gain nothing.

What a proposal says comes from the agent: ``what`` and ``reason`` are cut at
``MAX_TEXT`` bytes (with a marker), and a bottle may have at most
``max_pending`` proposals waiting at once (the supervise server's limit), so
that one agent cannot bury the others' asks in the operator's queue.

Stdlib only: the sidecar image and the host import this module.
"""

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass

from bottle_sidecar.audit import cut

BUSY_TIMEOUT = 5.0  # seconds
MAX_TEXT = 8 * 1024  # bytes of a proposal's what or reason, before the cut marker
KINDS = ("egress", "capability", "blocked", "budget")
ANSWERS = ("approved", "modified", "rejected", "expired")
COLUMNS = ("id", "created", "bottle", "agent", "kind", "what", "reason", "status",
           "answer_note", "answer_value", "answered_at")
TABLE = f"""
CREATE TABLE {{name}} (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    bottle TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN {KINDS!r}),
    what TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {('pending', *ANSWERS)!r}),
    answer_note TEXT NOT NULL DEFAULT '',
    answer_value TEXT,
    answered_at REAL
)"""
INDEX = "CREATE INDEX IF NOT EXISTS proposals_status ON proposals (status)"


class ProposalError(ValueError):
    """An answer the queue refuses: no such proposal, or it was answered already."""


class TooManyPending(ProposalError):
    """A proposal the queue refuses: its bottle has as many waiting as it may."""


@dataclass(frozen=True)
class Proposal:
    """One row of the queue. ``answer_value`` is what the operator actually
    granted (for egress: the host allowed, which differs when ``modified``)."""

    id: int
    created: float
    bottle: str
    agent: str
    kind: str
    what: str
    reason: str
    status: str
    answer_note: str
    answer_value: str | None
    answered_at: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class Queue:
    """The queue at *path*, created (mode 0600: the operator's alone) when missing.

    Each operation opens its own connection: the queue is used from worker
    threads in the server and from short-lived commands on the host, and a
    connection per call is simplest to get right across both.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:  # an empty file is an empty database; made here so that its mode is right from the start
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(descriptor)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # one creator or migrator at a time: every sidecar opens the queue
            made = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'proposals'").fetchone()
            if made is None:
                db.execute(TABLE.format(name="proposals"))
            elif any(repr(kind) not in made[0] for kind in KINDS):
                # Made by an older bottle, whose CHECK lacks a kind added since: the table is made again.
                db.execute(TABLE.format(name="proposals_new"))
                db.execute("INSERT INTO proposals_new SELECT * FROM proposals")
                db.execute("DROP TABLE proposals")
                db.execute("ALTER TABLE proposals_new RENAME TO proposals")
            db.execute(INDEX)
            db.execute("COMMIT")

    def _connect(self) -> closing[sqlite3.Connection]:
        # Autocommit (isolation_level=None): each statement is its own transaction.
        return closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None))

    def propose(self, bottle: str, agent: str, kind: str, what: str, reason: str,
                max_pending: int | None = None) -> int:
        """Queue a pending proposal; return its id. With *max_pending*, refuse
        (:class:`TooManyPending`) one that would make more than that many of
        *bottle*'s wait at once."""
        if kind not in KINDS:
            raise ProposalError(f"unknown proposal kind {kind!r}; expected one of {', '.join(KINDS)}")
        with self._connect() as db:
            # One statement: of two proposals racing for the last place, one wins.
            cursor = db.execute(
                "INSERT INTO proposals (created, bottle, agent, kind, what, reason) SELECT ?, ?, ?, ?, ?, ?"
                " WHERE ? IS NULL OR (SELECT count(*) FROM proposals WHERE bottle = ? AND status = 'pending') < ?",
                (time.time(), bottle, agent, kind, cut(what, MAX_TEXT), cut(reason, MAX_TEXT),
                 max_pending, bottle, max_pending),
            )
        if not cursor.rowcount:
            raise TooManyPending(f"bottle {bottle} has {max_pending} proposals waiting for an answer already")
        return cursor.lastrowid

    def get(self, proposal_id: int) -> Proposal:
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        if row is None:
            raise ProposalError(f"no proposal {proposal_id}")
        return Proposal(*row)

    def pending(self) -> list[Proposal]:
        """Every bottle's unanswered proposals, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM proposals WHERE status = 'pending' ORDER BY id"
            ).fetchall()
        return [Proposal(*row) for row in rows]

    def answer(self, proposal_id: int, status: str, note: str = "", value: str | None = None) -> Proposal:
        """Answer a pending proposal; refuse one that is unknown or already answered."""
        if status not in ANSWERS:
            raise ProposalError(f"unknown answer {status!r}; expected one of {', '.join(ANSWERS)}")
        with self._connect() as db:
            # One statement: of two answers racing (operator and timeout), one wins.
            changed = db.execute(
                "UPDATE proposals SET status = ?, answer_note = ?, answer_value = ?, answered_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status, note, value, time.time(), proposal_id),
            ).rowcount
        if not changed:
            current = self.get(proposal_id)
            raise ProposalError(f"proposal {proposal_id} was already answered: {current.status}")
        return self.get(proposal_id)

    def wait_answer(self, proposal_id: int, timeout: float, poll: float = 0.2) -> Proposal:
        """Block until the proposal is answered; after *timeout* seconds, answer it "expired"."""
        deadline = time.monotonic() + timeout
        while True:
            proposal = self.get(proposal_id)
            if proposal.status != "pending":
                return proposal
            if time.monotonic() >= deadline:
                try:
                    return self.answer(proposal_id, "expired", f"no answer within {timeout:g} s")
                except ProposalError:  # answered in the meantime: that answer stands
                    return self.get(proposal_id)
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def expire_pending(self, bottle: str, note: str) -> list[int]:
        """Expire what *bottle* still waits for (it is stopping: nobody would
        read the answers); return the ids."""
        with self._connect() as db:
            rows = db.execute(
                "UPDATE proposals SET status = 'expired', answer_note = ?, answered_at = ?"
                " WHERE bottle = ? AND status = 'pending' RETURNING id",
                (note, time.time(), bottle),
            ).fetchall()
        return sorted(row[0] for row in rows)

