"""The supervise server as it runs in the sidecar: ``python -m bottle_supervise_sidecar.server``
in a subprocess on 127.0.0.1, called with the MCP SDK's client over streamable
HTTP and with plain HTTP for the hooks, answered from here through
``supervise_ops`` (the live allowlist change replaced: the integration tests
cover it).
"""

import asyncio
import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from bottle_egress import allowlist as egress_control
from bottle_supervise import plugin as supervise_provisioner
from bottle_sidecar.audit import read_events
from bottle_supervise_sidecar.proposals import Queue
from bottle_supervise_sidecar.server import TokenBucket
from bottle_supervise.desk import answer, list_proposals, prepare_queue
from tests.support.collection import require

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
        [sys.executable, "-m", "bottle_supervise_sidecar.server", "--listen-host", "127.0.0.1", "--listen-port", "0",
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


def launch(root: Path, answer_timeout: float, *extra: str) -> Server:
    prepare_queue(root)
    deny = root / "deny.json"
    deny.write_text(json.dumps(DENY))
    process, line, output = start_server(root, answer_timeout, "--deny", str(deny), *extra)
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
    async with httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(TIMEOUT, read=60)) as http:
        async with streamable_http_client(f"{base}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await action(session)


def call_tool(server: Server, tool: str, arguments: dict):
    return asyncio.run(_session_call(server.base, lambda session: session.call_tool(tool, arguments)))


def answer_when_asked(server: Server, plugins, decision: str, **kwargs) -> threading.Thread:
    """In the background, as the operator: answer the first proposal that appears."""

    def work():
        deadline = time.monotonic() + TIMEOUT
        while not (pending := list_proposals(server.state_root)) and time.monotonic() < deadline:
            time.sleep(0.05)
        answer(server.state_root, pending[0]["id"], decision, plugins=plugins, **kwargs)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def result_of(result) -> dict:
    assert not result.is_error, result.content
    structured = result.structured_content
    assert json.loads(result.content[0].text) == structured  # what the model reads
    return structured


def test_the_agent_sees_the_three_tools(server):
    tools = asyncio.run(_session_call(server.base, lambda session: session.list_tools())).tools

    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {"request_egress", "request_capability", "report_blocked"}
    egress = by_name["request_egress"].input_schema
    assert egress["required"] == ["host", "reason"]
    assert egress["properties"]["reason"]["maxLength"] == 2000
    assert "blocked" in by_name["request_egress"].description
    assert by_name["report_blocked"].input_schema["required"] == ["text"]


def test_an_approved_egress_request_returns_after_the_allowlist_changed(server, allowlist, plugins):
    operator = answer_when_asked(server, plugins, "approve", note="for the docs build")

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


def test_a_modified_egress_request_tells_what_was_allowed_instead(server, allowlist, plugins):
    operator = answer_when_asked(server, plugins, "modify", host="*.pythonhosted.org")

    result = result_of(call_tool(server, "request_egress", {"host": "files.pythonhosted.org:443", "reason": "wheels"}))
    operator.join()

    assert allowlist == [(SLUG, "*.pythonhosted.org", True)]
    assert (result["status"], result["granted"]) == ("modified", "*.pythonhosted.org")
    assert "instead of files.pythonhosted.org:443" in result["message"]


@pytest.mark.parametrize("tool, arguments, what", [
    ("request_capability", {"what": "jq", "reason": "parse JSON"}, "jq"),
    ("report_blocked", {"text": "the tests need a GPU"}, "the tests need a GPU"),
])
def test_a_rejection_is_returned_with_the_note(server, allowlist, tool, arguments, what, plugins):
    operator = answer_when_asked(server, plugins, "reject", note="not in this bottle")

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

    assert result.is_error
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
    event = server.events("guest")[-1]
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
    assert server.events("guest")[-1]["detail"]["rule"] == DENY[0]


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
    assert server.events("guest")[-1]["decision"] == "tool-denied"


def test_large_tool_input_is_cut_in_the_audit_log(server):
    content = "x" * 100_000
    _, response = post(server, "pre-tool-use", pre_tool_use("Write", {"file_path": "/work/big", "content": content}))

    assert decision(response)[0] == "allow"
    detail = server.events("guest")[-1]["detail"]
    size = len(json.dumps({"content": content, "file_path": "/work/big"}))
    assert detail["tool_input"] == json.dumps({"content": content, "file_path": "/work/big"})[:4000] + f"…[cut {size - 4000} bytes]"


def test_every_field_the_agent_sends_is_cut_in_the_audit_log(server):
    """Claude Code never sends a 1 MiB tool name; an agent posting to the endpoint may."""
    name, session = "T" * 1024 * 1024, "s" * 5000
    _, response = post(server, "pre-tool-use", pre_tool_use(name, {"command": "c" * 50_000}, session_id=session))

    assert decision(response)[0] == "allow"
    event = server.events("guest")[-1]
    marker = f"…[cut {len(name) - 200} bytes]"
    assert event["reason"] == f"{'T' * 200}{marker}: {'c' * 200}…[cut {50_000 - 200} bytes]"
    assert event["detail"]["tool_name"] == "T" * 200 + marker
    assert event["detail"]["session_id"] == "s" * 200 + f"…[cut {5000 - 200} bytes]"
    assert event["detail"]["tool_input"].endswith(" bytes]") and len(event["detail"]["tool_input"]) < 4100

    post(server, "post-tool-use", {"tool_name": name, "hook_event_name": "PostToolUse", "tool_response": "r" * 100_000})
    event = server.events("guest")[-1]
    assert event["reason"] == "T" * 200 + marker and len(json.dumps(event)) < 1000


def test_text_sqlite_cannot_store_is_kept_escaped(server):
    body = b'{"tool_name": "Bash\\ud800", "tool_input": {"command": "echo \\udfff"}}'
    status, response = post(server, "pre-tool-use", body)

    assert status == 200 and decision(response)[0] == "allow"
    assert server.events("guest")[-1]["reason"] == "Bash\\ud800: echo \\udfff"


def test_hook_input_over_the_limit_is_denied_unread(server):
    big = json.dumps(pre_tool_use("Write", {"file_path": "/w", "content": "x" * (2 * 1024 * 1024)})).encode()

    status, response = post(server, "pre-tool-use", big)

    assert status == 200
    permission, reason = decision(response)
    assert permission == "deny" and f"more than {2 * 1024 * 1024} bytes" in reason
    assert server.events("guest")[-1]["decision"] == "tool-denied"


def test_an_mcp_body_over_the_limit_is_refused_unread(server):
    host, port = server.base.removeprefix("http://").split(":")
    declared = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    declared.putrequest("POST", "/mcp")
    declared.putheader("content-type", "application/json")
    declared.putheader("content-length", str(1024 * 1024 + 1))
    declared.endheaders()  # and no body: the answer must not wait for it
    assert declared.getresponse().status == 413

    # Undeclared: a valid first message, padded past the limit, which the SDK would answer.
    initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
    for padding, expected in ((0, 200), (1024 * 1024, 413)):
        chunked = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        chunks = [initialize] + [b" " * 65536] * (padding // 65536)
        chunked.request("POST", "/mcp", body=iter(chunks), encode_chunked=True,
                        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
        assert chunked.getresponse().status == expected, padding
    assert server.process.poll() is None


def test_the_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])

    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.4  # 0.8 of a token back
    assert not bucket.take()
    now[0] = 0.5
    assert bucket.take() and not bucket.take()
    now[0] = 100  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_a_hook_flood_is_refused_fails_closed_and_is_counted_once(tmp_path):
    server = launch(tmp_path, 5, "--hook-rate", "2", "--hook-burst", "3")
    try:
        answers = [post(server, "pre-tool-use", pre_tool_use("Bash", {"command": f"echo {n}"})) for n in range(10)]
        flooded = post(server, "post-tool-use", {"tool_name": "Bash", "hook_event_name": "PostToolUse"})

        permissions = [decision(response) for _, response in answers]
        assert [permission for permission, _ in permissions] == ["allow"] * 3 + ["deny"] * 7
        assert "more than 2 tool calls a second" in permissions[-1][1]
        assert flooded[0] == 429
        assert [e["reason"] for e in server.events("guest")] == [f"Bash: echo {n}" for n in range(3)]
        assert server.events() == []

        time.sleep(0.6)  # a token back
        status, response = post(server, "pre-tool-use", pre_tool_use("Bash", {"command": "echo later"}))
        assert decision(response)[0] == "allow"
        (counted,) = server.events()
        assert counted["decision"] == "rate-limited" and counted["detail"]["refused"] == 8
        assert counted["detail"]["what"] == "hook events" and counted["reason"] == "refused 8 hook events over this bottle's limits"
        assert server.events("guest")[-1]["reason"] == "Bash: echo later"
        assert server.events("guest")[-1]["id"] > counted["id"]
    finally:
        stop(server)


def test_asks_are_limited_in_rate_and_in_number_waiting(tmp_path):
    server = launch(tmp_path, 30, "--ask-burst", "3", "--ask-rate", "0.001", "--max-pending", "1")

    async def flood(session):
        async with anyio.create_task_group() as calls:
            calls.start_soon(session.call_tool, "request_capability", {"what": "gcc", "reason": "first"})
            with anyio.fail_after(TIMEOUT):
                while not list_proposals(server.state_root):
                    await anyio.sleep(0.05)
            results = [await session.call_tool("report_blocked", {"text": f"ask {n}"}) for n in range(4)]
            waiting = [proposal["what"] for proposal in list_proposals(server.state_root)]
            calls.cancel_scope.cancel()
        return results, waiting

    try:
        results, waiting = asyncio.run(_session_call(server.base, flood))
        assert [r.is_error for r in results] == [True] * 4
        texts = [r.content[0].text for r in results]
        assert all("1 of your requests are waiting for the operator already" in t for t in texts[:2])
        assert all("too many requests to the operator (at most 3 at once" in t for t in texts[2:])
        assert waiting == ["gcc"]
    finally:
        stop(server)
    # A row each time one is let through after refusals (the third ask, by the
    # rate limit, before the queue refused it), and one for the rest at the stop.
    counted = [e for e in server.events() if e["decision"] == "rate-limited"]
    assert [(e["detail"]["what"], e["detail"]["refused"]) for e in counted] == [("asks", 1), ("asks", 3)]


def test_the_limits_must_be_sane(tmp_path):
    prepare_queue(tmp_path)
    for flags, message in ((("--hook-rate", "0"), "a positive rate"), (("--max-pending", "0"), "--max-pending")):
        process, line, _ = start_server(tmp_path, 5, *flags)
        assert process.wait(TIMEOUT) == 2 and message in line


def test_post_tool_use_and_stop_are_recorded_and_change_nothing(server):
    status, response = post(server, "post-tool-use", {**pre_tool_use("Bash", {"command": "ls"}),
                                                      "hook_event_name": "PostToolUse",
                                                      "tool_response": {"stdout": "a\nb", "stderr": ""}})
    assert (status, response) == (200, {})
    event = server.events("guest")[-1]
    assert (event["decision"], event["reason"], event["detail"]["event"]) == ("tool-result", "Bash", "PostToolUse")
    assert "tool_response" not in event["detail"]

    status, response = post(server, "stop", {"session_id": "s-1", "hook_event_name": "Stop", "stop_hook_active": False})
    assert (status, response) == (200, {})
    event = server.events("guest")[-1]
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



# -- the hook client the guest runs (bottle_supervise.plugin) ---------------


@pytest.fixture(scope="module")
def hook_client(tmp_path_factory) -> Path:
    """The client script as the provisioner installs it."""
    require(Path("/usr/bin/curl").is_file(), "the hook client runs /usr/bin/curl")
    script = tmp_path_factory.mktemp("client") / "supervise-hook"
    script.write_text(supervise_provisioner.HOOK_SCRIPT)
    script.chmod(0o755)
    return script


def run_hook(script: Path, url: str, event: str, body: dict | str, env: dict | None = None):
    """Run the hook's command line from the managed settings, with *script* as the client."""
    command = supervise_provisioner._hook(url, event)["command"].replace(supervise_provisioner.HOOK_CLIENT, str(script))
    return subprocess.run(["/bin/sh", "-c", command], input=body if isinstance(body, str) else json.dumps(body),
                          capture_output=True, text=True, env=env or {}, timeout=TIMEOUT)


def test_the_managed_hooks_run_the_client_with_nothing_inherited():
    settings = supervise_provisioner.settings("http://sidecar:8765")

    commands = [hook["command"] for groups in settings["hooks"].values() for group in groups for hook in group["hooks"]]
    assert commands == [f"/usr/bin/env -i /usr/local/lib/bottle/supervise-hook http://sidecar:8765 {event}" + tail
                        for event, tail in (("pre-tool-use", " || exit 2"), ("post-tool-use", ""), ("stop", ""))]
    assert settings["env"] == {"LD_PRELOAD": "", "LD_LIBRARY_PATH": "", "LD_AUDIT": ""}


@pytest.mark.parametrize("tool_input, expected", [({"command": "ls"}, "allow"), ({"command": "rm -rf /"}, "deny")])
def test_the_client_relays_the_servers_decision(server, hook_client, tool_input, expected):
    done = run_hook(hook_client, server.base, "pre-tool-use", pre_tool_use("Bash", tool_input))

    assert done.returncode == 0, done.stderr
    assert decision(json.loads(done.stdout))[0] == expected
    assert server.events("guest")[-1]["detail"]["tool_input"] == json.dumps(tool_input)


def test_the_client_ignores_the_agents_curl_config(server, hook_client, tmp_path):
    """Even given the agent's environment (no `env -i`), `-q` keeps curl from a
    .curlrc that would discard the answer (which lets the call through) or send
    the question elsewhere."""
    (tmp_path / ".curlrc").write_text('output = "/dev/null"\nconnect-to = "::127.0.0.1:9"\n')
    env = {"HOME": str(tmp_path), "CURL_HOME": str(tmp_path), "http_proxy": "http://127.0.0.1:9"}
    body = json.dumps(pre_tool_use("Bash", {"command": "rm -rf /"}))

    done = subprocess.run([str(hook_client), server.base, "pre-tool-use"], input=body, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)

    assert done.returncode == 0, done.stderr
    assert decision(json.loads(done.stdout))[0] == "deny"


@pytest.fixture
def odd_server():
    """A server that answers 200 with something other than a decision."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"decision": "approve"}')

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_client_fails_closed(hook_client, odd_server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    try:
        for url in (unreachable, odd_server):
            done = run_hook(hook_client, url, "pre-tool-use", pre_tool_use("Bash", {"command": "ls"}))
            assert (done.returncode, done.stdout) == (2, ""), url
            assert "the tool call is blocked" in done.stderr

        done = run_hook(hook_client, unreachable, "post-tool-use", {"tool_name": "Bash"})
        assert done.returncode == 1 and "did not record this post-tool-use event" in done.stderr
    finally:
        closed.close()


def test_the_client_records_what_needs_no_decision_and_says_nothing(server, hook_client):
    done = run_hook(hook_client, server.base, "post-tool-use", {"tool_name": "Bash", "hook_event_name": "PostToolUse"})

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert server.events("guest")[-1]["decision"] == "tool-result"
