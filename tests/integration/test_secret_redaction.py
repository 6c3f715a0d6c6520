"""One secret must not end the session: the real Claude Code in a real bottle.

The agent runs a command that prints a GitHub-token-shaped string. The
Messages API is sent the whole conversation with every request, so from then
on each request carries it. With the API's credential route in ``redact`` mode
each one reaches the API with a marker in the secret's place and the session
goes on to its end; in ``block`` mode the first one is refused, and the audit
log says by which detector.
"""

import json

import pytest

from tests.support.fake_anthropic import text, tool_use

pytestmark = pytest.mark.integration

TOKEN = "ghp_" + "A1b2" * 9
# Built by the shell, so that only the command's output holds the token, as a
# file the agent reads or a tool it runs would.
PRINT_TOKEN = "printf 'ghp_%s\\n' \"$(printf 'A1b2%.0s' 1 2 3 4 5 6 7 8 9)\""
MARKER = "[bottle:redacted:github-token:1]"


def profile_with_mode(api_profile, secret_mode: str) -> str:
    # The generated profile ends in the fake API's [[credentials]] route: this line is the route's.
    return api_profile() + f'on_secret = "{secret_mode}"\n'


def audit_rows(home, agent: str) -> tuple[list[dict], str]:
    [plan] = home.state.glob(f"{agent}-*/plan.json")
    done = home.run("audit", plan.parent.name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stdout


def test_in_redact_mode_the_conversation_goes_on_with_a_marker(home, fake_api, api_profile):
    home.agent("leaky", "Run what you are asked.")
    home.profile("default", profile_with_mode(api_profile, "redact"))
    fake_api.enqueue(tool_use("Bash", {"command": PRINT_TOKEN}), text("Printed it."))

    result = home.run("run", "leaky", "--prompt", "Print the token.")

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Printed it." in result.stdout
    main = fake_api.message_requests(main_only=True)
    assert len(main) >= 2, f"no request after the tool ran: {fake_api.requests}"
    assert MARKER in fake_api.all_text(main[-1])  # the tool's output, as the API saw it
    wire = json.dumps([[r.path, r.headers, r.body] for r in fake_api.requests])
    assert TOKEN not in wire
    assert "github-token:2" not in wire  # one secret, one marker, in every request
    rows, text_of_audit = audit_rows(home, "leaky")
    redacted = [row for row in rows if row["decision"] == "redacted"]
    assert redacted, rows
    assert {"detector": "GitHub Token", "location": "body"}.items() <= redacted[0]["detail"]["redactions"][0].items()
    assert not [row for row in rows if row["decision"] == "blocked"]
    assert TOKEN not in text_of_audit


def test_in_block_mode_the_request_is_refused_and_the_audit_names_the_detector(home, fake_api, api_profile):
    home.agent("leaky", "Run what you are asked.")
    home.profile("default", profile_with_mode(api_profile, "block"))
    fake_api.enqueue(tool_use("Bash", {"command": PRINT_TOKEN}), text("Never reached."))

    result = home.run("run", "leaky", "--prompt", "Print the token.")

    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Never reached." not in result.stdout
    shown = result.stdout + result.stderr  # the 403 as Claude Code shows it: what fired, how to let it pass
    assert "GitHub Token" in shown and "secret_exempt" in shown and 'on_secret = "redact"' in shown, shown
    assert TOKEN not in json.dumps([[r.path, r.headers, r.body] for r in fake_api.requests])
    rows, text_of_audit = audit_rows(home, "leaky")
    blocked = [row for row in rows if row["decision"] == "blocked"]
    assert blocked, rows
    assert (blocked[0]["detail"]["check"], blocked[0]["detail"]["detector"]) == ("secret", "GitHub Token")
    assert TOKEN not in text_of_audit
