"""The audit log: every decision the sidecar's daemons take, in one SQLite file.

The egress proxy appends a row per decision (later the git gate and the
supervise server too); ``bottle audit`` reads them from the bottle's state dir,
during the run and after it. WAL lets the host read while the sidecar writes,
and the busy timeout rides out the short write locks of the other side.

A row never holds a secret: callers pass redacted information only (a
detector's name and an offset, a credential's name), so the log can be shown
and shared as it is.

Stdlib only: the host imports this module too.
"""

import json
import os
import sqlite3
import threading
import time

BUSY_TIMEOUT = 5.0  # seconds
COLUMNS = ("id", "ts", "bottle", "source", "decision", "method", "host", "port", "path", "reason", "detail")
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    bottle TEXT NOT NULL,
    source TEXT NOT NULL,
    decision TEXT NOT NULL,
    method TEXT,
    host TEXT,
    port INTEGER,
    path TEXT,
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT
)
"""


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): each row is its own transaction,
    # written before the decision it records takes effect.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)


class AuditLog:
    """Appends the decisions of one bottle to the log at *path* (created if missing)."""

    def __init__(self, path: str | os.PathLike, bottle: str):
        self.bottle = bottle
        self._lock = threading.Lock()  # one connection, shared by whichever thread records
        self._db = _connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last rows
        self._db.execute(SCHEMA)

    def record(
        self,
        source: str,
        decision: str,
        *,
        method: str | None = None,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        reason: str = "",
        detail: dict | None = None,
    ) -> int:
        """Append one decision; return its id.

        *source* is the daemon ("egress", "git", "supervise", or "operator" for
        the host's own changes); *decision* is "allowed", "blocked", "injected" and
        the like; *detail* is any JSON-able dict. Nothing passed may be secret.
        """
        row = (
            time.time(), self.bottle, source, decision, method, host, port, path, reason,
            None if detail is None else json.dumps(detail, sort_keys=True),
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (ts, bottle, source, decision, method, host, port, path, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return cursor.lastrowid

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_events(path: str | os.PathLike, *, blocked_only: bool = False, since_id: int = 0) -> list[dict]:
    """The events after *since_id*, oldest first, each a dict of ``COLUMNS``
    with ``detail`` decoded. A log that does not exist (yet) has no events."""
    if not os.path.exists(path):
        return []
    query = f"SELECT {', '.join(COLUMNS)} FROM events WHERE id > ?"
    if blocked_only:
        query += " AND decision = 'blocked'"
    db = _connect(path)
    try:
        rows = db.execute(query + " ORDER BY id", (since_id,)).fetchall()
    finally:
        db.close()
    events = [dict(zip(COLUMNS, row)) for row in rows]
    for event in events:
        event["detail"] = None if event["detail"] is None else json.loads(event["detail"])
    return events
