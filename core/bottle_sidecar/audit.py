"""The audit log: every decision the sidecar's daemons take, in one SQLite file.

The egress proxy appends a row per decision (later the git gate and the
supervise server too); ``bottle audit`` reads them from the bottle's state dir,
during the run and after it. WAL lets the host read while the sidecar writes,
and the busy timeout rides out the short write locks of the other side.

A row never holds a secret: callers pass redacted information only (a
detector's name and an offset, a credential's name), so the log can be shown
and shared as it is.

Much of what a row says comes from the agent (hosts, paths, tool calls), so
the log is bounded twice over: each text column is cut at ``MAX_FIELD`` bytes
and the detail at ``MAX_DETAIL`` bytes of JSON, with a marker saying how much
was cut (:func:`cut`); and the log as a whole keeps to a byte budget (its rows'
text, ``max_bytes``): past it the oldest rows are dropped, down to
``PRUNE_TO`` of the budget, and a row (source ``audit``, decision ``dropped``)
says how many. The budget is stored in the file by whoever creates it (the
host, from the ``audit_max_mb`` setting), so every writer keeps to the same
one; triggers keep the running total, so it holds across processes.

Stdlib only: the host imports this module too.
"""

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

BUSY_TIMEOUT = 5.0  # seconds
COLUMNS = ("id", "ts", "bottle", "source", "decision", "method", "host", "port", "path", "reason", "detail")
MAX_FIELD = 8 * 1024  # bytes of one text column, before the cut marker
MAX_DETAIL = 32 * 1024  # bytes of the detail's JSON, before the cut marker
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the log's budget when its creator set none
PRUNE_TO = 0.75  # of the budget, what is left after dropping: pruning is rare, not once per row


def _row_bytes(row: str) -> str:
    """SQL for what a row of *row* (``NEW``, ``OLD``, ``events``) costs: its text in bytes, plus its numbers."""
    text = " || ".join(f"coalesce({row}.{column}, '')"
                       for column in ("bottle", "source", "decision", "method", "host", "path", "reason", "detail"))
    return f"(length(CAST({text} AS BLOB)) + 24)"


SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
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
    )""",
    # "bytes": the rows' running total; "dropped": rows dropped so far; "max_bytes": the budget.
    "CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # A log made before the totals existed is summed once (the condition is constant: no scan otherwise).
    f"INSERT OR IGNORE INTO log_meta SELECT 'bytes', coalesce(sum({_row_bytes('events')}), 0) FROM events"
    " WHERE NOT EXISTS (SELECT 1 FROM log_meta WHERE key = 'bytes')",
    "INSERT OR IGNORE INTO log_meta VALUES ('dropped', 0)",
    f"""CREATE TRIGGER IF NOT EXISTS events_bytes_in AFTER INSERT ON events BEGIN
        UPDATE log_meta SET value = value + {_row_bytes('NEW')} WHERE key = 'bytes'; END""",
    f"""CREATE TRIGGER IF NOT EXISTS events_bytes_out AFTER DELETE ON events BEGIN
        UPDATE log_meta SET value = value - {_row_bytes('OLD')} WHERE key = 'bytes'; END""",
)
INSERT = ("INSERT INTO events (ts, bottle, source, decision, method, host, port, path, reason, detail)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def cut(text: str, limit: int) -> str:
    """*text* if it fits in *limit* bytes of UTF-8, else as much of it as fits and
    a marker, ``…[cut N bytes]``. Either way storable: a lone surrogate (which
    JSON can carry and SQLite refuses) becomes its visible escape."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data.decode("utf-8")
    head = data[:limit].decode("utf-8", "ignore")  # not half a character
    return f"{head}…[cut {len(data) - len(head.encode('utf-8'))} bytes]"


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): each row is its own transaction,
    # written before the decision it records takes effect.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)


class AuditLog:
    """Appends the decisions of one bottle to the log at *path* (created if missing).

    *max_bytes* sets the log's budget (see the module's docstring); without it
    the log keeps the one it has, or ``DEFAULT_MAX_BYTES`` if it is new.
    """

    def __init__(self, path: str | os.PathLike, bottle: str, max_bytes: int | None = None):
        self.path = path
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"an audit log's budget must be positive, not {max_bytes}")
        self.bottle = bottle
        self._lock = threading.Lock()  # one connection, shared by whichever thread records
        self._db = _connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last rows
        with self._transaction():  # the daemons open the log at once: the schema and its totals are made once
            for statement in SCHEMA:
                self._db.execute(statement)
            if max_bytes is None:
                self._db.execute("INSERT OR IGNORE INTO log_meta VALUES ('max_bytes', ?)", (DEFAULT_MAX_BYTES,))
            else:
                self._db.execute("INSERT OR REPLACE INTO log_meta VALUES ('max_bytes', ?)", (max_bytes,))
            self.max_bytes = self._meta("max_bytes")

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM log_meta WHERE key = ?", (key,)).fetchone()[0]

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
        Text is cut to the row's bounds; a detail over ``MAX_DETAIL`` is kept
        as ``{"cut": "<the head of its JSON>…[cut N bytes]"}``.
        """
        text = None
        if detail is not None:
            text = json.dumps(detail, sort_keys=True)  # ASCII: escapes are storable
            if len(text) > MAX_DETAIL:
                text = json.dumps({"cut": cut(text, MAX_DETAIL)})
        method, host, path = (None if value is None else cut(value, MAX_FIELD) for value in (method, host, path))
        row = (time.time(), self.bottle, cut(source, MAX_FIELD), cut(decision, MAX_FIELD), method, host, port, path,
               cut(reason, MAX_FIELD), text)
        with self._lock:
            row_id = self._db.execute(INSERT, row).lastrowid
            if self._meta("bytes") > self.max_bytes:
                self._prune()
        return row_id

    def _prune(self) -> None:
        """Drop the oldest rows until the log holds ``PRUNE_TO`` of its budget,
        and record how many (the newest row stays: ids keep increasing, which
        readers that follow the log by id rely on)."""
        with self._transaction():  # another writer may have pruned meanwhile
            excess = self._meta("bytes") - int(self.max_bytes * PRUNE_TO)
            if excess <= 0:
                return
            freed, last = 0, None
            rows = self._db.execute(f"SELECT id, {_row_bytes('events')} FROM events"
                                    " WHERE id < (SELECT max(id) FROM events) ORDER BY id")
            for last, size in rows:
                freed += size
                if freed >= excess:
                    break
            rows.close()
            if last is None:
                return
            dropped = self._db.execute("DELETE FROM events WHERE id <= ?", (last,)).rowcount
            self._db.execute("UPDATE log_meta SET value = value + ? WHERE key = 'dropped'", (dropped,))
            total = self._meta("dropped")
            self._db.execute(INSERT, (
                time.time(), self.bottle, "audit", "dropped", None, None, None, None,
                f"dropped the {dropped} oldest rows ({total} in all) to keep this log under {self.max_bytes} bytes",
                json.dumps({"dropped": dropped, "dropped_total": total, "through_id": last,
                            "max_bytes": self.max_bytes}),
            ))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def last_id(path: str | os.PathLike) -> int:
    """The id of the log's newest event (0: none yet): where a reader that wants only what comes next starts."""
    if not os.path.exists(path):
        return 0
    db = _connect(path)
    try:
        return db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    finally:
        db.close()


def read_events(path: str | os.PathLike, *, decision: str | None = None, since_id: int = 0) -> list[dict]:
    """The events after *since_id* (only those of *decision*, when given: the database picks them), oldest
    first, each a dict of ``COLUMNS`` with ``detail`` decoded. A log that does not exist (yet) has no events."""
    if not os.path.exists(path):
        return []
    query, arguments = f"SELECT {', '.join(COLUMNS)} FROM events WHERE id > ?", [since_id]
    if decision is not None:
        query, arguments = query + " AND decision = ?", [since_id, decision]
    db = _connect(path)
    try:
        rows = db.execute(query + " ORDER BY id", arguments).fetchall()
    finally:
        db.close()
    events = [dict(zip(COLUMNS, row)) for row in rows]
    for event in events:
        event["detail"] = None if event["detail"] is None else json.loads(event["detail"])
    return events
