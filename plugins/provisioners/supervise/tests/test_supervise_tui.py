"""``bottle supervise``, headless under Textual's pilot: proposals appear, are
answered by key press and disappear; the audit tail follows the selected bottle."""

import asyncio
import time

import pytest
from textual.widgets import DataTable, RichLog

from bottle_egress import allowlist as egress_control
from bottle.errors import UsageError
from bottle_sidecar.audit import AuditLog
from bottle_supervise_sidecar.proposals import Queue
from bottle.sidecar.runtime import audit_path
from bottle_supervise.desk import QUEUE_FILE, prepare_queue
from bottle_supervise.tui import Prompt, SuperviseApp


@pytest.fixture
def queue(home):
    return Queue(prepare_queue(home.state_root) / QUEUE_FILE)


@pytest.fixture
def allowlist(monkeypatch):
    calls = []
    monkeypatch.setattr(egress_control, "change_allowlist", lambda slug, rule, allow: calls.append((slug, rule, allow)))
    return calls


async def settle(app, pilot) -> None:
    """Let answers (worker threads) finish and the screen catch up."""
    await app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot, condition, timeout: float = 10) -> None:
    """Pause until *condition()* holds: refreshes come on a timer."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def rows(app) -> list[list[str]]:
    table = app.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def test_a_pending_proposal_appears_is_approved_by_key_and_disappears(home, queue, allowlist, plugins):
    async def scenario():
        app = SuperviseApp(home.state_root, plugins, interval=0.1)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            assert rows(app) == []

            proposal_id = queue.propose("slug-1", "coder", "egress", "pypi.org", "pip install requests")
            await until(pilot, lambda: rows(app))  # the next refresh shows it
            assert [row[:1] + row[2:] for row in rows(app)] == [[str(proposal_id), "slug-1", "coder", "egress",
                                                                 "pypi.org", "pip install requests"]]

            await pilot.press("a")
            await settle(app, pilot)
            assert rows(app) == []
        return proposal_id

    proposal_id = asyncio.run(scenario())

    assert queue.get(proposal_id).status == "approved"
    assert allowlist == [("slug-1", "pypi.org", True)]


def test_a_note_goes_with_the_answer_and_modify_asks_for_the_host(home, queue, allowlist, plugins):
    first = queue.propose("slug-1", "coder", "egress", "files.pythonhosted.org", "wheels")
    second = queue.propose("slug-2", "reviewer", "capability", "jq", "parse JSON")

    async def scenario():
        app = SuperviseApp(home.state_root, plugins)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await pilot.press("n")
            assert isinstance(app.screen, Prompt)
            await pilot.press(*"wheels only", "enter")
            await pilot.press("m")
            assert isinstance(app.screen, Prompt)
            app.screen.query_one("Input").value = "*.pythonhosted.org"
            await pilot.press("enter")
            await settle(app, pilot)
            assert [row[0] for row in rows(app)] == [str(second)]

            await pilot.press("m")  # not an egress request: nothing to ask
            assert not isinstance(app.screen, Prompt)
            await pilot.press("r")
            await settle(app, pilot)
            assert rows(app) == []

    asyncio.run(scenario())

    answered = queue.get(first)
    assert (answered.status, answered.answer_value, answered.answer_note) == ("modified", "*.pythonhosted.org",
                                                                               "wheels only")
    assert queue.get(second).status == "rejected"
    assert allowlist == [("slug-1", "*.pythonhosted.org", True)]


def test_a_failed_answer_is_shown_and_the_proposal_stays(home, queue, monkeypatch, plugins):
    def not_running(slug, rule, allow):
        raise UsageError(f"Bottle {slug!r} is not running (its sidecar is gone); nothing to change.")

    monkeypatch.setattr(egress_control, "change_allowlist", not_running)
    proposal_id = queue.propose("gone", "coder", "egress", "pypi.org", "pip")

    async def scenario():
        app = SuperviseApp(home.state_root, plugins)
        shown = []
        monkeypatch.setattr(app, "notify", lambda message, **options: shown.append((message, options)))
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await pilot.press("a")
            await settle(app, pilot)
            assert [row[0] for row in rows(app)] == [str(proposal_id)]
        assert [(message, options["severity"]) for message, options in shown] == [
            ("Bottle 'gone' is not running (its sidecar is gone); nothing to change.", "error")]

    asyncio.run(scenario())
    assert queue.get(proposal_id).status == "pending"


def test_the_audit_tail_follows_the_selected_bottle(home, queue, plugins):
    for slug in ("slug-1", "slug-2"):
        path = audit_path(home.state_root / slug)
        path.parent.mkdir(parents=True)
        log = AuditLog(path, slug)
        log.record("egress", "blocked", method="GET", host=f"{slug}.example", port=443, path="/")
        log.close()
    queue.propose("slug-1", "coder", "egress", "slug-1.example", "docs")
    queue.propose("slug-2", "coder", "egress", "slug-2.example", "docs")

    async def scenario():
        app = SuperviseApp(home.state_root, plugins, interval=0.1)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            tail = app.query_one(RichLog)
            assert "slug-1.example" in text_of(tail) and "slug-2.example" not in text_of(tail)

            log = AuditLog(audit_path(home.state_root / "slug-1"), "slug-1")
            log.record("egress", "allowed", method="GET", host="later.example", port=443, path="/")
            log.close()
            await until(pilot, lambda: "later.example" in text_of(tail))

            await pilot.press("down")
            await pilot.pause()
            assert "slug-2.example" in text_of(tail) and "slug-1.example" not in text_of(tail)

    asyncio.run(scenario())


def text_of(log: RichLog) -> str:
    return "\n".join(line.text for line in log.lines)


def test_what_the_agent_wrote_is_shown_as_written(home, queue, plugins):
    hostile = "[/] [b red]URGENT[/b red] [link=x]ok[/link]"
    queue.propose("slug-1", "coder", "egress", hostile, hostile)

    async def scenario():
        app = SuperviseApp(home.state_root, plugins)
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            assert rows(app)[0][5:] == [hostile, hostile]
            await pilot.press("m")
            assert hostile in str(app.screen.query_one("Label").render())
            await pilot.press("escape")
            details = app.query_one("#details")
            assert hostile in str(details.render())

    asyncio.run(scenario())


def test_the_selected_bottles_usage_and_budget_are_shown(home, queue, plugins):
    import json

    state = home.state_root / "slug-2"
    audit_path(state).parent.mkdir(parents=True)
    log = AuditLog(audit_path(state), "slug-2")
    log.record("egress", "metered", detail={"model": "m", "input_tokens": 120, "output_tokens": 10, "usd": 0.75})
    log.close()
    (audit_path(state).parent / "policy.json").write_text(json.dumps({"budget": {"max_tokens": 5000, "per": "run"}}))

    async def scenario():
        app = SuperviseApp(home.state_root, plugins, interval=0.1)
        async with app.run_test(size=(140, 40)) as pilot:
            queue.propose("slug-2", "coder", "budget", "10000", "spent")
            await until(pilot, lambda: rows(app))
            return str(app.query_one("#details").render())

    assert "usage: 130 tokens ($0.75) of a budget of 5000 tokens per run" in asyncio.run(scenario())
