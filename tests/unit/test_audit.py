"""The audit log: rows in, rows out, from several writers and while being read."""

import sqlite3
import threading

import pytest

from bottle_sidecar.audit import MAX_DETAIL, MAX_FIELD, SCHEMA, AuditLog, _row_bytes, cut, read_events


def test_a_recorded_decision_reads_back(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, "slug")

    first = log.record("egress", "allowed", method="GET", host="api.example.com", port=443, path="/v1",
                       reason="rule 'api.example.com'", detail={"rule": "api.example.com", "addresses": ["1.2.3.4"]})
    second = log.record("operator", "rule-added", host="other.example")
    log.close()

    events = read_events(path)
    assert [event["id"] for event in events] == [first, second]
    event = events[0]
    assert event["ts"] > 0
    assert {k: v for k, v in event.items() if k not in ("id", "ts")} == {
        "bottle": "slug", "source": "egress", "decision": "allowed", "method": "GET", "host": "api.example.com",
        "port": 443, "path": "/v1", "reason": "rule 'api.example.com'",
        "detail": {"rule": "api.example.com", "addresses": ["1.2.3.4"]},
    }
    assert events[1]["detail"] is None and events[1]["reason"] == "" and events[1]["method"] is None


def test_the_reader_filters(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, "slug")
    ids = [log.record("egress", decision) for decision in ("allowed", "blocked", "injected", "blocked")]

    assert [e["id"] for e in read_events(path, decision="blocked")] == [ids[1], ids[3]]
    assert [e["id"] for e in read_events(path, since_id=ids[1])] == ids[2:]
    assert [e["id"] for e in read_events(path, decision="blocked", since_id=ids[1])] == [ids[3]]


def test_a_log_that_does_not_exist_has_no_events_and_is_not_created(tmp_path):
    assert read_events(tmp_path / "audit.sqlite") == []
    assert not (tmp_path / "audit.sqlite").exists()


def test_the_log_is_in_wal_mode_so_the_host_reads_while_the_sidecar_writes(tmp_path):
    path = tmp_path / "audit.sqlite"
    writer = AuditLog(path, "slug")
    writer.record("egress", "allowed")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)

    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # a read transaction stays open...
    writer.record("egress", "blocked")  # ...and does not stop the writer
    reader.rollback()
    assert len(read_events(path)) == 2


def test_several_writers_and_threads_lose_nothing(tmp_path):
    path = tmp_path / "audit.sqlite"
    host_side, sidecar_side = AuditLog(path, "slug"), AuditLog(path, "slug")

    def write(log, source):
        for _ in range(50):
            log.record(source, "allowed")

    threads = [threading.Thread(target=write, args=(log, source))
               for log, source in ((host_side, "operator"), (sidecar_side, "egress"), (sidecar_side, "git"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    events = read_events(path)
    assert len(events) == 150
    assert {event["source"] for event in events} == {"operator", "egress", "git"}


def test_cut_keeps_what_fits_and_says_how_much_it_cut():
    assert cut("short", 10) == "short"
    assert cut("x" * 11, 10) == "x" * 10 + "…[cut 1 bytes]"
    assert cut("é" * 6, 5) == "éé…[cut 8 bytes]"  # never half a character
    assert cut("a\ud800b", 100) == "a\\ud800b"  # storable, and visibly so


def test_a_row_is_bounded_whatever_it_is_given(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, "slug")
    huge = "h" * (MAX_FIELD * 4)

    log.record("egress", "blocked", method=huge, host=huge, path=huge, reason=huge,
               detail={"url": huge, "nested": [{"deep": huge}]})

    (event,) = read_events(path)
    for column in ("method", "host", "path", "reason"):
        assert event[column] == "h" * MAX_FIELD + f"…[cut {MAX_FIELD * 3} bytes]"
    assert set(event["detail"]) == {"cut"} and event["detail"]["cut"].endswith(" bytes]")
    assert len(event["detail"]["cut"]) < MAX_DETAIL + 30
    assert len(sqlite3.connect(path).execute("SELECT detail FROM events").fetchone()[0]) < MAX_DETAIL + 100


def _stored_bytes(path) -> int:
    return sqlite3.connect(path).execute("SELECT value FROM log_meta WHERE key = 'bytes'").fetchone()[0]


def test_the_log_keeps_to_its_budget_dropping_the_oldest_and_saying_so(tmp_path):
    path = tmp_path / "audit.sqlite"
    budget = 200_000
    host_side = AuditLog(path, "slug", max_bytes=budget)  # the host creates the log with its budget
    sidecar_side = AuditLog(path, "slug")  # a daemon opens it after: the same budget

    assert sidecar_side.max_bytes == budget
    ids = [(host_side if n % 2 else sidecar_side).record("guest", "tool-call", reason=f"{n:04} " + "r" * 1000)
           for n in range(1000)]

    events = read_events(path)
    assert _stored_bytes(path) <= budget
    total = sqlite3.connect(path).execute(f"SELECT sum({_row_bytes('events')}) FROM events").fetchone()[0]
    assert total == _stored_bytes(path)  # the triggers' running total is the truth
    dropped = [e for e in events if e["decision"] == "dropped"]
    assert dropped and all(e["source"] == "audit" for e in dropped)
    kept = [e for e in events if e["decision"] != "dropped"]
    assert kept[-1]["id"] == ids[-1]
    assert [e["reason"][:4] for e in kept] == [f"{n:04}" for n in range(1000 - len(kept), 1000)]  # the newest stay
    assert dropped[-1]["detail"]["dropped_total"] >= 1000 - len(kept)  # the older markers were dropped too
    assert f"to keep this log under {budget} bytes" in dropped[-1]["reason"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_a_log_made_without_totals_is_summed_when_opened(tmp_path):
    path = tmp_path / "audit.sqlite"
    old = sqlite3.connect(path)
    old.execute(SCHEMA[0])
    old.execute("INSERT INTO events (ts, bottle, source, decision, reason) VALUES (1, 'slug', 'egress', 'allowed', 'x')")
    old.commit()

    AuditLog(path, "slug").close()

    assert _stored_bytes(path) == len("slugegressallowedx") + 24


def test_a_budget_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        AuditLog(tmp_path / "audit.sqlite", "slug", max_bytes=0)


def test_the_last_id_is_where_the_next_reader_starts(tmp_path):
    from bottle_sidecar.audit import last_id

    path = tmp_path / "audit.sqlite"
    assert last_id(path) == 0
    log = AuditLog(path, "slug")
    assert last_id(path) == 0
    first = log.record("git", "allowed")
    second = log.record("git", "blocked")
    log.close()
    assert last_id(path) == second > first
    assert [event["id"] for event in read_events(path, since_id=first)] == [second]
