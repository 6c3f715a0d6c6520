"""The audit log: rows in, rows out, from several writers and while being read."""

import sqlite3
import threading

from bottle.sidecar.audit import AuditLog, read_events


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

    assert [e["id"] for e in read_events(path, blocked_only=True)] == [ids[1], ids[3]]
    assert [e["id"] for e in read_events(path, since_id=ids[1])] == ids[2:]
    assert [e["id"] for e in read_events(path, blocked_only=True, since_id=ids[1])] == [ids[3]]


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
