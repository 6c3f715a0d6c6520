"""Supervise end to end: real Claude Code asks through MCP, the operator answers
with `bottle answer`, the approval opens the door live; deny rules stop tool calls."""

import json
import threading
import time

from tests.support.fake_anthropic import FakeMessagesAPI, text, tool_use

SUPERVISE = "\n[supervise]\nenabled = true\nanswer_timeout = 120\n"
TOOLS = {"mcp__supervise__request_egress", "mcp__supervise__request_capability", "mcp__supervise__report_blocked"}


def _answer_first_proposal(home, answered: list, stop: threading.Event) -> None:
    """The operator: wait for a pending proposal, approve it."""
    while not stop.is_set():
        listed = home.run("proposals", "--json")
        pending = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
        if pending:
            answered.append(home.run("answer", str(pending[0]["id"]), "--approve", "--note", "go ahead"))
            return
        time.sleep(0.5)


def test_request_egress_is_approved_and_applied(home, fake_api, api_profile, host_gateway, upstream_ca):
    with FakeMessagesAPI(host="0.0.0.0", tls=(upstream_ca.cert, upstream_ca.key)) as docs:
        target = f"{host_gateway}:{docs.port}"
        home.profile("default", api_profile() + SUPERVISE)
        home.agent("asker", "Ask for what you need.")
        fetch = f"curl -sS -o /dev/null -w 'status=%{{http_code}}' -d '{{}}' https://{target}/v1/messages/count_tokens"
        fake_api.enqueue(
            tool_use("mcp__supervise__request_egress", {"host": target, "reason": "I need the docs server"}),
            tool_use("Bash", {"command": fetch}),
            text("done"),
        )
        answered: list = []
        stop = threading.Event()
        operator = threading.Thread(target=_answer_first_proposal, args=(home, answered, stop), daemon=True)
        operator.start()
        try:
            result = home.run("run", "asker", "--prompt", "Fetch the docs.", timeout=300)
        finally:
            stop.set()
            operator.join(timeout=30)

    assert result.returncode == 0, result.stderr
    assert answered and answered[0].returncode == 0, answered and answered[0].stderr
    main = fake_api.message_requests(main_only=True)
    assert TOOLS <= {tool["name"] for tool in main[0].body["tools"]}
    assert "approved" in fake_api.all_text(main[1]) and "go ahead" in fake_api.all_text(main[1])
    assert "status=200" in fake_api.all_text(main[2])
    assert any(r.path.startswith("/v1/messages/count_tokens") for r in docs.requests)
    (slug,) = [p.name for p in home.state.iterdir() if p.name.startswith("asker-")]
    events = json.loads(home.run("audit", slug, "--json").stdout)
    seen = {(e["source"], e["decision"]) for e in events}
    assert {("supervise", "proposed"), ("supervise", "approved"), ("operator", "rule-added")} <= seen
    assert any(e["source"] == "egress" and e["decision"] == "allowed" and e.get("port") == docs.port for e in events)


def test_deny_rule_stops_a_tool_call(home, fake_api, api_profile):
    deny = '\ndeny = [{ tool = "Bash", pattern = "touch /tmp/forbidden", reason = "no touching" }]\n'
    home.profile("default", api_profile() + SUPERVISE + deny)
    home.agent("denied", "Do as told.")
    fake_api.enqueue(
        tool_use("Bash", {"command": "touch /tmp/forbidden"}),
        tool_use("Bash", {"command": "ls /tmp/forbidden; echo rc=$?"}),
        text("done"),
    )

    result = home.run("run", "denied", "--prompt", "Touch it.", timeout=300)

    assert result.returncode == 0, result.stderr
    main = fake_api.message_requests(main_only=True)
    assert "no touching" in fake_api.all_text(main[1])
    assert "No such file" in fake_api.all_text(main[2]), "the denied command ran"
    (slug,) = [p.name for p in home.state.iterdir() if p.name.startswith("denied-")]
    events = json.loads(home.run("audit", slug, "--json").stdout)
    assert any(e["source"] == "guest" and e["decision"] == "tool-denied" for e in events)
