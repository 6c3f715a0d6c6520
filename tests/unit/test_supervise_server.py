"""The supervise server as it runs in the sidecar: ``python -m bottle.sidecar.supervise``
in a subprocess on 127.0.0.1, called with the MCP SDK's client over streamable
HTTP and with plain HTTP for the hooks, answered from here through
``supervise_ops`` (the live allowlist change replaced: the integration tests
cover it).
"""

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from bottle import egress_control
from bottle.sidecar.audit import read_events
from bottle.sidecar.proposals import Queue
from bottle.supervise_ops import answer, list_proposals, prepare_queue

SLUG = "supervise-test"
AGENT = "coder"
DENY = [
    {"tool": "Bash", "pattern": r"\brm\s+-rf\b", "field": "command", "reason": "no recursive deletes"},
    {"tool": "Write|Edit", "pattern": r"^/etc/", "field": "file_path"},
    {"tool": "mcp__.*", "reason": "no other MCP servers"},
]
TIMEOUT = 20


@dataclass
class Server:
    process: subprocess.Popen
    output: list[str]  # what it printed after its ready line
    base: str  # http://127.0.0.1:PORT
    state_root: Path
    audit: Path

    @property
    def queue(self) -> Queue:
        return Queue(self.state_root / "supervise" / "queue.sqlite")

    def events(self, source: str = "supervise") -> list[dict]:
        return [event for event in read_events(self.audit) if event["source"] == source]


def start_server(root: Path, answer_timeout: float, *extra: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start the server; return it, its first line (the ready line, or an error)
    and the list its later output is collected into (read, so that it never blocks)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bottle.sidecar.supervise", "--listen-host", "127.0.0.1", "--listen-port", "0",
         "--queue", str(root / "supervise" / "queue.sqlite"), "--audit", str(root / "audit.sqlite"),
         "--bottle", SLUG, "--agent", AGENT, "--answer-timeout", str(answer_timeout), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        first = process.stdout.readline().strip()
    finally:
        timer.cancel()
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    return process, first, output


def launch(root: Path, answer_timeout: float) -> Server:
    prepare_queue(root)
    deny = root / "deny.json"
    deny.write_text(json.dumps(DENY))
    process, line, output = start_server(root, answer_timeout, "--deny", str(deny))
    prefix = "bottle-supervise: listening on 127.0.0.1:"
    assert line.startswith(prefix), line + (process.stdout.read() if process.poll() is not None else "")
    return Server(process, output, f"http://127.0.0.1:{line.removeprefix(prefix)}", root, root / "audit.sqlite")


def stop(server: Server) -> None:
    server.process.terminate()
    assert server.process.wait(TIMEOUT) == 0  # a requested stop is not a failure


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = launch(tmp_path_factory.mktemp("supervise"), answer_timeout=15)
    yield running
    stop(running)


@pytest.fixture
def allowlist(monkeypatch):
    calls = []
    monkeypatch.setattr(egress_control, "change_allowlist", lambda slug, rule, allow: calls.append((slug, rule, allow)))
    return calls


async def _session_call(base: str, action):
    # No proxy from the environment: everything here is on loopback.
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(TIMEOUT, read=60)) as http:
        async with streamable_http_client(f"{base}/mcp", http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await action(session)


def call_tool(server: Server, tool: str, arguments: dict):
    return asyncio.run(_session_call(server.base, lambda session: session.call_tool(tool, arguments)))


def answer_when_asked(server: Server, decision: str, **kwargs) -> threading.Thread:
    """In the background, as the operator: answer the first proposal that appears."""

    def work():
        deadline = time.monotonic() + TIMEOUT
        while not (pending := list_proposals(server.state_root)) and time.monotonic() < deadline:
            time.sleep(0.05)
        answer(server.state_root, pending[0]["id"], decision, **kwargs)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def result_of(result) -> dict:
    assert not result.isError, result.content
    structured = result.structuredContent
    assert json.loads(result.content[0].text) == structured  # what the model reads
    return structured


def test_the_agent_sees_the_three_tools(server):
    tools = asyncio.run(_session_call(server.base, lambda session: session.list_tools())).tools

    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {"request_egress", "request_capability", "report_blocked"}
    egress = by_name["request_egress"].inputSchema
    assert egress["required"] == ["host", "reason"]
    assert egress["properties"]["reason"]["maxLength"] == 2000
    assert "blocked" in by_name["request_egress"].description
    assert by_name["report_blocked"].inputSchema["required"] == ["text"]


def test_an_approved_egress_request_returns_after_the_allowlist_changed(server, allowlist):
    operator = answer_when_asked(server, "approve", note="for the docs build")

    result = result_of(call_tool(server, "request_egress", {"host": "PyPI.org", "reason": "pip install requests"}))
    operator.join()

    assert allowlist == [(SLUG, "pypi.org", True)]
    assert result["status"] == "approved" and result["granted"] == "pypi.org"
    assert result["note"] == "for the docs build"
    assert "pypi.org is now allowed" in result["message"] and "for the docs build" in result["message"]
    proposal = server.queue.get(result["proposal"])
    assert (proposal.bottle, proposal.agent, proposal.kind, proposal.what, proposal.reason) == (
        SLUG, AGENT, "egress", "pypi.org", "pip install requests")
    events = [e for e in server.events() if (e["detail"] or {}).get("proposal") == result["proposal"]]
    assert [(e["decision"], e["host"], e["reason"]) for e in events] == [
        ("proposed", "pypi.org", "pip install requests"), ("approved", "pypi.org", "for the docs build")]
    assert events[1]["detail"]["granted"] == "pypi.org"


def test_a_modified_egress_request_tells_what_was_allowed_instead(server, allowlist):
    operator = answer_when_asked(server, "modify", host="*.pythonhosted.org")

    result = result_of(call_tool(server, "request_egress", {"host": "files.pythonhosted.org:443", "reason": "wheels"}))
    operator.join()

    assert allowlist == [(SLUG, "*.pythonhosted.org", True)]
    assert (result["status"], result["granted"]) == ("modified", "*.pythonhosted.org")
    assert "instead of files.pythonhosted.org:443" in result["message"]


@pytest.mark.parametrize("tool, arguments, what", [
    ("request_capability", {"what": "jq", "reason": "parse JSON"}, "jq"),
    ("report_blocked", {"text": "the tests need a GPU"}, "the tests need a GPU"),
])
def test_a_rejection_is_returned_with_the_note(server, allowlist, tool, arguments, what):
    operator = answer_when_asked(server, "reject", note="not in this bottle")

    result = result_of(call_tool(server, tool, arguments))
    operator.join()

    assert (result["status"], result["note"], result["granted"]) == ("rejected", "not in this bottle", None)
    assert "Rejected" in result["message"]
    assert server.queue.get(result["proposal"]).what == what
    assert allowlist == []
    assert server.events()[-1]["decision"] == "rejected"


@pytest.mark.parametrize("tool, arguments, fragment", [
    ("request_egress", {"reason": "x"}, "host is required"),
    ("request_egress", {"host": "pypi.org"}, "reason is required"),
    ("request_egress", {"host": 443, "reason": "x"}, "host: Input should be a valid string (got int)"),
    ("request_egress", {"host": "pypi.org", "reason": ["a", "b"]}, "reason: Input should be a valid string (got list)"),
    ("request_egress", {"host": "pypi.org", "reason": "x" * 2001}, "reason: String should have at most 2000 characters"),
    ("request_egress", {"host": "pypi.org", "reason": ""}, "reason: String should have at least 1 character"),
    ("request_egress", {"host": "https://pypi.org", "reason": "x"}, "has a scheme"),
    ("request_egress", {"host": "pypi.org/simple", "reason": "x"}, "has a path"),
    ("request_egress", {"host": "pypi.org?x=1", "reason": "x"}, "has a path"),
    ("request_egress", {"host": "user:pw@pypi.org", "reason": "x"}, "has user information"),
    ("request_egress", {"host": "pypi .org", "reason": "x"}, "contains a space"),
    ("request_egress", {"host": "pypi.org:99999", "reason": "x"}, "is not a valid allow rule"),
    ("request_egress", {"host": "bad_host..", "reason": "x"}, "is not a valid allow rule"),
    ("request_capability", {"what": None, "reason": "x"}, "what: Input should be a valid string (got NoneType)"),
    ("request_capability", {"what": "jq", "reason": "y" * 5000}, "at most 2000 characters"),
    ("report_blocked", {}, "text is required"),
    ("report_blocked", {"text": {"nested": "object"}}, "text: Input should be a valid string (got dict)"),
    ("sudo", {}, "Unknown tool: sudo"),
])
def test_bad_input_is_a_clear_tool_error_and_queues_nothing(server, tool, arguments, fragment):
    before = len(server.events())

    result = call_tool(server, tool, arguments)

    assert result.isError
    message = result.content[0].text
    assert fragment in message, message
    assert "pydantic.dev" not in message and len(message) < 1000
    assert list_proposals(server.state_root) == []
    assert len(server.events()) == before
    assert server.process.poll() is None
    assert not [line for line in server.output if "Traceback" in line or line.startswith("ERROR")]


def test_host_errors_say_what_to_give_instead(server):
    message = call_tool(server, "request_egress", {"host": "https://pypi.org/simple", "reason": "x"}).content[0].text

    assert message == ("request_egress: host 'https://pypi.org/simple' has a scheme; give HOST or HOST:PORT, "
                       "such as api.example.com or api.example.com:8443")


def post(server: Server, hook: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.base}/hooks/{hook}", data=data,
                                     headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def pre_tool_use(tool: str, tool_input: object, **extra) -> dict:
    return {"session_id": "s-1", "transcript_path": "/home/agent/.claude/t.jsonl", "cwd": "/work",
            "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input,
            "tool_use_id": "toolu_1", **extra}


def decision(response: dict) -> tuple[str, str]:
    output = response["hookSpecificOutput"]
    assert output["hookEventName"] == "PreToolUse"
    return output["permissionDecision"], output["permissionDecisionReason"]


@pytest.mark.parametrize("tool, tool_input, expected", [
    ("Bash", {"command": "ls -la", "description": "list"}, "allow"),
    ("Bash", {"command": "cd /tmp && rm  -rf build"}, "deny"),
    ("Bash", {"command": "echo rm -rfx"}, "allow"),  # \b after -rf
    ("Bash", {"description": "rm -rf /"}, "allow"),  # the rule looks at the command only
    ("Write", {"file_path": "/etc/hosts", "content": "1.2.3.4 x"}, "deny"),
    ("Write", {"file_path": "/work/etc/notes", "content": "x"}, "allow"),
    ("Edit", {"file_path": "/etc/passwd", "old_string": "a", "new_string": "b"}, "deny"),
    ("Read", {"file_path": "/etc/hosts"}, "allow"),
    ("mcp__other__tool", {}, "deny"),
    ("NotBash", {"command": "rm -rf /"}, "allow"),  # tool names match whole
])
def test_pre_tool_use_answers_by_the_deny_rules_and_is_audited(server, tool, tool_input, expected):
    status, response = post(server, "pre-tool-use", pre_tool_use(tool, tool_input))

    assert status == 200
    permission, reason = decision(response)
    assert permission == expected
    event = server.events()[-1]
    assert event["decision"] == ("tool-call" if expected == "allow" else "tool-denied")
    assert event["reason"].startswith(f"{tool}: ")
    assert event["detail"]["tool_name"] == tool and event["detail"]["tool_use_id"] == "toolu_1"
    assert json.loads(event["detail"]["tool_input"]) == tool_input
    if expected == "deny":
        assert reason.startswith("denied by the operator's supervise rules") and reason in event["reason"]
        assert "pattern" not in reason and event["detail"]["rule"] in DENY


def test_a_denial_carries_the_rules_reason(server):
    _, response = post(server, "pre-tool-use", pre_tool_use("Bash", {"command": "rm -rf /"}))

    assert decision(response)[1] == "denied by the operator's supervise rules: no recursive deletes"
    assert server.events()[-1]["detail"]["rule"] == DENY[0]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"tool_input": {"command": "ls"}}).encode(), "tool_name must be a non-empty string"),
    (json.dumps({"tool_name": 7}).encode(), "tool_name must be a non-empty string"),
])
def test_pre_tool_use_input_that_cannot_be_read_is_denied(server, body, fragment):
    status, response = post(server, "pre-tool-use", body)

    assert status == 200
    permission, reason = decision(response)
    assert permission == "deny" and fragment in reason
    assert server.events()[-1]["decision"] == "tool-denied"


def test_large_tool_input_is_cut_in_the_audit_log(server):
    content = "x" * 100_000
    _, response = post(server, "pre-tool-use", pre_tool_use("Write", {"file_path": "/work/big", "content": content}))

    assert decision(response)[0] == "allow"
    detail = server.events()[-1]["detail"]
    assert len(detail["tool_input"]) == 4000 and detail["tool_input_cut"] is True


def test_post_tool_use_and_stop_are_recorded_and_change_nothing(server):
    status, response = post(server, "post-tool-use", {**pre_tool_use("Bash", {"command": "ls"}),
                                                      "hook_event_name": "PostToolUse",
                                                      "tool_response": {"stdout": "a\nb", "stderr": ""}})
    assert (status, response) == (200, {})
    event = server.events()[-1]
    assert (event["decision"], event["reason"], event["detail"]["event"]) == ("tool-result", "Bash", "PostToolUse")
    assert "tool_response" not in event["detail"]

    status, response = post(server, "stop", {"session_id": "s-1", "hook_event_name": "Stop", "stop_hook_active": False})
    assert (status, response) == (200, {})
    event = server.events()[-1]
    assert (event["decision"], event["detail"]) == ("stop", {"event": "Stop", "session_id": "s-1", "stop_hook_active": False})

    status, response = post(server, "stop", b"garbage")
    assert status == 400 and "not JSON" in response["error"]


def test_a_call_the_agent_stops_waiting_for_is_withdrawn(server):
    async def give_up(session):
        """Call, and stop waiting once the proposal is queued (however slow the machine)."""
        async with anyio.create_task_group() as calls:
            calls.start_soon(session.call_tool, "request_capability", {"what": "gcc", "reason": "build a wheel"})
            with anyio.fail_after(TIMEOUT):
                while not list_proposals(server.state_root):
                    await anyio.sleep(0.05)
            calls.cancel_scope.cancel()

    asyncio.run(_session_call(server.base, give_up))

    deadline = time.monotonic() + TIMEOUT
    withdrawn = []
    while not withdrawn and time.monotonic() < deadline:
        withdrawn = [e for e in server.events() if (e["decision"], e["reason"]) == ("expired", "the agent stopped waiting")]
        time.sleep(0.05)
    assert withdrawn, server.events()
    assert server.queue.get(withdrawn[-1]["detail"]["proposal"]).status == "expired"


def test_an_unanswered_request_expires_and_a_stopping_server_withdraws_what_waits(tmp_path, allowlist):
    server = launch(tmp_path, answer_timeout=0.5)
    try:
        result = result_of(call_tool(server, "request_egress", {"host": "example.com", "reason": "docs"}))
        assert result["status"] == "expired" and result["note"] == "no answer within 0.5 s"
        assert result["message"].startswith("The request expired (no answer within 0.5 s).")
        assert server.queue.get(result["proposal"]).status == "expired"
        assert [e["decision"] for e in server.events()] == ["proposed", "expired"]
    finally:
        stop(server)

    # A proposal left pending by a server that is gone (or, here, never ran a
    # call) is expired when a server for the bottle stops.
    server = launch(tmp_path, answer_timeout=30)
    left = server.queue.propose(SLUG, AGENT, "capability", "gcc", "build")
    other = server.queue.propose("another-bottle", AGENT, "capability", "gcc", "build")
    stop(server)

    assert (server.queue.get(left).status, server.queue.get(left).answer_note) == ("expired", "the bottle stopped")
    assert server.queue.get(other).status == "pending"
    assert server.events()[-1]["decision"] == "expired"
    assert allowlist == []


def test_bad_deny_rules_stop_the_server_at_start(tmp_path):
    prepare_queue(tmp_path)
    rules = tmp_path / "deny.json"
    rules.write_text(json.dumps([{"tool": "Bash", "pattern": "("}]))

    process, line, _ = start_server(tmp_path, 5, "--deny", str(rules))

    assert process.wait(TIMEOUT) == 2
    assert line.startswith(f"bottle-supervise: cannot read the deny rules {rules}: deny[0].pattern: '(' is not")
