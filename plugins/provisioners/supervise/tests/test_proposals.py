"""The proposal queue (sidecar side) and the operator's answers (host side)."""

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from bottle_egress import allowlist as egress_control
from bottle.cli import manage
from bottle_supervise import commands as cli
from bottle.errors import UsageError
from bottle_supervise_sidecar import deny_rules, proposals
from bottle_supervise_sidecar.proposals import ProposalError, Queue, TooManyPending
from bottle_supervise.desk import answer, list_proposals, prepare_queue
from tests.unit.test_sidecar_init import absolute_imports



@pytest.fixture
def queue(tmp_path):
    return Queue(tmp_path / "queue.sqlite")


@pytest.fixture
def allowlist(monkeypatch):
    """Replaces the live allowlist change (covered by the integration tests); records calls."""
    calls = []
    monkeypatch.setattr(egress_control, "change_allowlist", lambda slug, rule, allow: calls.append((slug, rule, allow)))
    return calls


def test_the_queue_needs_only_the_stdlib():
    """The host imports it, and the sidecar image holds nothing else it could use: the stdlib and the kit
    (``bottle_sidecar``, stdlib only itself)."""
    assert absolute_imports(Path(proposals.__file__)) <= sys.stdlib_module_names | {"bottle_sidecar"}
    assert absolute_imports(Path(deny_rules.__file__)) <= sys.stdlib_module_names | {"bottle_sidecar"}


def test_a_proposal_is_pending_until_answered(queue):
    first = queue.propose("bottle-a", "coder", "egress", "pypi.org", "install requests")
    second = queue.propose("bottle-b", "reviewer", "capability", "jq", "parse JSON")

    assert [p.id for p in queue.pending()] == [first, second]
    proposal = queue.get(first)
    assert (proposal.bottle, proposal.agent, proposal.kind, proposal.what, proposal.reason, proposal.status) == (
        "bottle-a", "coder", "egress", "pypi.org", "install requests", "pending")
    assert proposal.answered_at is None and proposal.created <= time.time()

    answered = queue.answer(first, "modified", "only the index", "pypi.org:8443")
    assert (answered.status, answered.answer_note, answered.answer_value) == ("modified", "only the index", "pypi.org:8443")
    assert answered.answered_at >= answered.created
    assert [p.id for p in queue.pending()] == [second]


def test_answers_are_refused_for_unknown_or_answered_proposals(queue):
    proposal_id = queue.propose("b", "a", "blocked", "no disk space", "")
    queue.answer(proposal_id, "rejected")

    with pytest.raises(ProposalError, match="already answered: rejected"):
        queue.answer(proposal_id, "approved")
    with pytest.raises(ProposalError, match="no proposal 999"):
        queue.answer(999, "approved")
    with pytest.raises(ProposalError, match="unknown answer 'maybe'"):
        queue.answer(proposal_id, "maybe")
    with pytest.raises(ProposalError, match="unknown proposal kind"):
        queue.propose("b", "a", "root", "everything", "")
    assert queue.get(proposal_id).status == "rejected"


def test_a_bottle_may_have_only_so_many_proposals_waiting(queue):
    first = queue.propose("b", "a", "capability", "gcc", "build", max_pending=2)
    queue.propose("b", "a", "capability", "jq", "parse", max_pending=2)

    with pytest.raises(TooManyPending, match="bottle b has 2 proposals waiting"):
        queue.propose("b", "a", "capability", "make", "build", max_pending=2)
    queue.propose("other", "a", "capability", "make", "build", max_pending=2)  # another bottle's count
    queue.answer(first, "rejected")
    queue.propose("b", "a", "capability", "make", "build", max_pending=2)  # a place came free
    assert [p.what for p in queue.pending() if p.bottle == "b"] == ["jq", "make"]


def test_what_a_proposal_says_is_cut(queue):
    proposal = queue.get(queue.propose("b", "a", "blocked", "w" * 10_000, "r" * 9000))

    assert proposal.what == "w" * 8192 + f"…[cut {10_000 - 8192} bytes]"
    assert proposal.reason == "r" * 8192 + f"…[cut {9000 - 8192} bytes]"


def test_waiting_returns_the_answer_written_by_another_connection(queue, tmp_path):
    proposal_id = queue.propose("b", "a", "capability", "gcc", "build a wheel")
    operator = Queue(tmp_path / "queue.sqlite")
    threading.Timer(0.3, operator.answer, (proposal_id, "approved", "installing it")).start()

    started = time.monotonic()
    proposal = queue.wait_answer(proposal_id, timeout=10, poll=0.05)

    assert proposal.status == "approved" and proposal.answer_note == "installing it"
    assert time.monotonic() - started < 5


def test_waiting_expires_after_the_timeout_and_a_late_answer_is_refused(queue):
    proposal_id = queue.propose("b", "a", "egress", "example.com", "docs")

    proposal = queue.wait_answer(proposal_id, timeout=0.2, poll=0.05)

    assert proposal.status == "expired" and "no answer within 0.2 s" in proposal.answer_note
    with pytest.raises(ProposalError, match="already answered: expired"):
        queue.answer(proposal_id, "approved")


def test_a_stopping_bottle_expires_only_its_own_pending_proposals(queue):
    mine = [queue.propose("mine", "a", "blocked", str(n), "") for n in range(2)]
    answered = queue.propose("mine", "a", "blocked", "done", "")
    queue.answer(answered, "approved")
    other = queue.propose("other", "a", "blocked", "x", "")

    assert queue.expire_pending("mine", "the bottle stopped") == mine
    assert [p.id for p in queue.pending()] == [other]
    assert queue.get(mine[0]).answer_note == "the bottle stopped"
    assert queue.get(answered).status == "approved"


def test_the_queue_is_the_operators_alone(home):
    directory = prepare_queue(home.state_root)

    assert directory == home.state_root / "supervise"
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "queue.sqlite").st_mode) == 0o600


def test_listing_before_any_bottle_asked_is_empty_and_creates_nothing(home):
    assert list_proposals(home.state_root) == []
    assert not (home.state_root / "supervise").exists()


def test_approving_egress_changes_the_allowlist_then_answers(home, monkeypatch, plugins):
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    proposal_id = queue.propose("slug-1", "coder", "egress", "pypi.org", "install requests")
    calls = []

    def change(slug, rule, allow):  # the waiting agent must not see the answer before the change
        calls.append((slug, rule, allow, queue.get(proposal_id).status))

    monkeypatch.setattr(egress_control, "change_allowlist", change)
    answered = answer(home.state_root, proposal_id, "approve", "ok for today", plugins=plugins)

    assert calls == [("slug-1", "pypi.org", True, "pending")]
    assert (answered["status"], answered["answer_value"], answered["answer_note"]) == ("approved", "pypi.org", "ok for today")
    assert list_proposals(home.state_root) == []


def test_modifying_egress_allows_the_operators_host(home, allowlist, plugins):
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    proposal_id = queue.propose("slug-1", "coder", "egress", "files.pythonhosted.org", "wheels")

    answered = answer(home.state_root, proposal_id, "modify", host="*.pythonhosted.org", plugins=plugins)

    assert allowlist == [("slug-1", "*.pythonhosted.org", True)]
    assert (answered["status"], answered["answer_value"]) == ("modified", "*.pythonhosted.org")


def test_rejecting_or_approving_other_kinds_leaves_the_allowlist_alone(home, allowlist, plugins):
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    egress = queue.propose("s", "a", "egress", "evil.example", "exfiltrate")
    capability = queue.propose("s", "a", "capability", "jq", "parse")

    assert answer(home.state_root, egress, "reject", "no", plugins=plugins)["status"] == "rejected"
    approved = answer(home.state_root, capability, "approve", "installed it", plugins=plugins)
    assert (approved["status"], approved["answer_value"]) == ("approved", None)
    assert allowlist == []


def test_bad_answers_name_the_argument(home, allowlist, usage_error, plugins):
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    capability = queue.propose("s", "a", "capability", "jq", "parse")
    egress = queue.propose("s", "a", "egress", "pypi.org", "pip")
    root = home.state_root

    usage_error(lambda: answer(root, 4242, "approve", plugins=plugins), "Argument ID", "no proposal 4242")
    usage_error(lambda: answer(root, egress, "maybe", plugins=plugins), "Argument DECISION", "'maybe'")
    usage_error(lambda: answer(root, egress, "modify", plugins=plugins), "Argument --host")
    usage_error(lambda: answer(root, egress, "approve", host="x.org", plugins=plugins), "Argument --host")
    usage_error(lambda: answer(root, capability, "modify", host="x.org", plugins=plugins), "Argument --host", "capability")
    usage_error(lambda: answer(root, egress, "modify", host="https://x.org/path", plugins=plugins), "Argument --host", "x.org/path")
    answer(root, capability, "reject", plugins=plugins)
    usage_error(lambda: answer(root, capability, "approve", plugins=plugins), "Argument ID", "already answered: rejected")
    assert allowlist == []


def test_an_egress_request_that_expires_while_approved_says_the_host_stays_allowed(home, monkeypatch, usage_error, plugins):
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    proposal_id = queue.propose("slug-1", "a", "egress", "pypi.org", "pip")
    monkeypatch.setattr(egress_control, "change_allowlist",
                        lambda slug, rule, allow: queue.answer(proposal_id, "expired", "too late"))

    usage_error(lambda: answer(home.state_root, proposal_id, "approve", plugins=plugins),
                "already answered: expired", "pypi.org stays allowed", "bottle egress deny slug-1 pypi.org")


@pytest.fixture
def existing(monkeypatch):
    """The bottles the backends list, as `bottle proposals` asks them (the real listing: test_cli_errors)."""
    slugs: list[str] = []
    monkeypatch.setattr(manage, "all_bottles", lambda: [(None, SimpleNamespace(slug=slug, status="running")) for slug in slugs])
    return slugs


def test_the_cli_lists_and_answers(home, existing):
    existing.append("slug-1")
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    proposal_id = queue.propose("slug-1", "coder", "capability", "jq", "parse JSON")
    app = typer.Typer()
    app.command("proposals")(cli.proposals)
    app.command("answer")(cli.answer)
    runner = CliRunner()

    result = runner.invoke(app, ["proposals"])
    assert result.exit_code == 0, result.output
    assert "slug-1" in result.output and "jq" in result.output and "(parse JSON)" in result.output

    result = runner.invoke(app, ["proposals", "--json"])
    assert json.loads(result.output)[0]["what"] == "jq"

    result = runner.invoke(app, ["answer", str(proposal_id), "--approve", "--reject"])
    assert isinstance(result.exception, UsageError) and "exactly one of --approve and --reject" in str(result.exception)

    result = runner.invoke(app, ["answer", str(proposal_id), "--reject", "--note", "use python"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"proposal {proposal_id} rejected"
    assert queue.get(proposal_id).answer_note == "use python"

    result = runner.invoke(app, ["answer", str(proposal_id), "--approve"])
    assert isinstance(result.exception, UsageError) and "already answered: rejected" in str(result.exception)

    result = runner.invoke(app, ["proposals"])
    assert result.output.strip() == "no pending proposals"


def test_the_cli_leaves_out_the_proposals_of_bottles_that_are_gone(home, existing):
    """A sidecar that died never expired its proposals: nobody would read an answer."""
    existing.append("alive-1")
    queue = Queue(prepare_queue(home.state_root) / "queue.sqlite")
    queue.propose("alive-1", "coder", "capability", "jq", "parse JSON")
    queue.propose("crashed-2", "coder", "egress", "pypi.org", "pip")
    app = typer.Typer()
    app.command()(cli.proposals)

    result = CliRunner().invoke(app, ["--json"])

    assert result.exit_code == 0, result.output
    assert [p["bottle"] for p in json.loads(result.stdout)] == ["alive-1"]
    assert "1 pending proposal(s) of bottles no backend lists are not shown" in result.stderr
