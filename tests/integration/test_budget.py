"""Usage and budgets end to end: the real Claude Code, in a real bottle, against the fake Messages API (which
reports usage like the real one, streamed and not). The sidecar meters every reply; past a small budget the
next request is refused with the API's own error, which Claude Code shows; the supervise server files a
proposal to raise it, `bottle answer --approve` raises it live, and the session goes on."""

import json
import os
import shlex
import subprocess
import time

import pytest

from tests.integration.test_interactive import _wait_screen, exit_session
from tests.integration.test_supervise_bottle import SUPERVISE
from tests.support.collection import require
from tests.support.fake_anthropic import text, tool_use

pytestmark = pytest.mark.integration

AFTER = "Going on within the raised budget."
FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def sent_tokens(fake_api) -> int:
    return sum(usage[name] for usage in fake_api.replied_usage() for name in FIELDS)


def metered(home, slug: str) -> dict:
    result = home.run("usage", slug, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[slug]["total"]


def test_a_headless_run_is_metered_to_the_token(home, fake_api, api_profile):
    home.profile("default", api_profile())
    home.agent("counted", "Be brief.")
    fake_api.enqueue(tool_use("Bash", {"command": "echo counted"}), text("Done."))

    result = home.run("run", "counted", "--name", "counted-1", "--prompt", "Count.")

    assert result.returncode == 0, result.stderr
    total = metered(home, "counted-1")
    assert total["total_tokens"] == sent_tokens(fake_api) > 0
    assert total["requests"] == len(fake_api.replied_usage())
    assert total["usd"] is not None, "the fake's model has a default price"
    listed = {entry["slug"]: entry for entry in json.loads(home.run("ls", "--json").stdout)}
    assert listed["counted-1"]["details"]["tokens"] == str(total["total_tokens"])


def test_past_its_budget_the_session_stops_until_the_operator_raises_it(home, fake_api, api_profile, tmp_path, engine):
    require(subprocess.run(["which", "tmux"], capture_output=True).returncode == 0, "tmux is not installed")
    home.profile("default", api_profile() + SUPERVISE + "\n[budget]\nmax_tokens = 3000\n")
    home.agent("spender", "Do as asked.")
    # The first request goes through (nothing used yet) and its reply uses more than 3000 tokens: Claude Code's
    # request carries its whole system prompt and tools. The tool result's request is the one refused.
    fake_api.enqueue(tool_use("Bash", {"command": "echo spent"}), text(AFTER))
    script = tmp_path / "session.sh"
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in home.env.items())
    script.write_text(f"{exports}cd {shlex.quote(str(home.project))}\n"
                      f"exec {shlex.join(home.command('run', 'spender', '--name', 'spender-1'))}\n")
    tmux = ["tmux", "-L", f"bottle-budget-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "bottle", "-x", "160", "-y", "50", f"bash {script}"], check=True)
    try:
        _wait_screen(tmux, "bypass permissions on")
        subprocess.run([*tmux, "send-keys", "-t", "bottle", "Spend some.", "Enter"], check=True)
        screen = _wait_screen(tmux, "tokens is spent")
        assert "budget of 3000" in screen and "spender-1" in screen, screen

        deadline = time.monotonic() + 30
        while not (pending := json.loads(home.run("proposals", "--json").stdout or "[]")):
            assert time.monotonic() < deadline, "no proposal to raise the budget"
            time.sleep(0.5)
        (proposal,) = pending
        assert (proposal["bottle"], proposal["kind"]) == ("spender-1", "budget") and int(proposal["what"]) > 3000
        answered = home.run("answer", str(proposal["id"]), "--approve")
        assert answered.returncode == 0, answered.stderr

        subprocess.run([*tmux, "send-keys", "-t", "bottle", "Go on.", "Enter"], check=True)
        _wait_screen(tmux, AFTER)  # the same Claude Code, within the raised budget
        total = metered(home, "spender-1")
        exit_session(tmux)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        deadline = time.monotonic() + 60
        while engine.containers.list(all=True, filters={"label": "bottle.slug"}) and time.monotonic() < deadline:
            time.sleep(0.5)

    assert total["total_tokens"] == sent_tokens(fake_api)
    audit = json.loads(home.run("audit", "spender-1", "--json").stdout)
    refused = [e for e in audit if e["decision"] == "blocked" and (e["detail"] or {}).get("check") == "budget"]
    assert refused and refused[0]["detail"]["max_tokens"] == 3000
    raised = [e for e in audit if e["decision"] == "budget-changed"]
    assert raised and raised[0]["detail"]["max_tokens"] == int(proposal["what"])
