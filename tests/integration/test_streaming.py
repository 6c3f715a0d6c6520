"""Replies stream through the sidecar, and the API's failures reach the agent as the API sent them.

The real Claude Code in a real bottle, against the fake Messages API, which
holds the rest of a reply until the test lets it go on: what Claude Code shows
before that can only have come through the sidecar as it was sent.
"""

import json
import queue
import threading

import pytest

from tests.support.fake_anthropic import RATE_LIMIT_MESSAGE, held, paused, rate_limited, text

pytestmark = pytest.mark.integration

STREAM_JSON = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


class Output:
    """Claude Code's stdout (stream-json) as it comes, read by a thread, one object per line."""

    def __init__(self, process):
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # the end

    def until(self, predicate, timeout: float) -> dict:
        """The next object matching *predicate*; AssertionError if none comes within *timeout* s."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"nothing matching on Claude Code's output within {timeout}s") from None
            if not line:
                raise AssertionError(f"bottle run ended first ({self.process.wait()}): {self.process.stderr.read()}")
            if line.startswith("{") and predicate(item := json.loads(line)):
                return item


def _text_delta(item: dict) -> str | None:
    event = item.get("event") or {}
    if item.get("type") == "stream_event" and event.get("type") == "content_block_delta":
        return event["delta"].get("text")
    return None


def test_the_first_text_delta_reaches_claude_code_before_the_api_sends_the_second(home, fake_api, api_profile):
    release = threading.Event()
    home.agent("streamer", "Answer briefly.")
    home.profile("default", api_profile())
    fake_api.enqueue(paused(release, text("streamed through"), after=1))
    process = home.popen("run", "streamer", "--prompt", "hi", "--", *STREAM_JSON)
    output = Output(process)
    try:
        # The fake holds "through" until release: a sidecar that held the reply until its end
        # would show Claude Code nothing here.
        first = output.until(_text_delta, timeout=120)
        sent = [e.data["delta"]["text"] for e in fake_api.sent if e.request.main and e.name == "content_block_delta"]
        assert (_text_delta(first), sent) == ("streamed ", ["streamed "])
        release.set()
        assert _text_delta(output.until(_text_delta, timeout=60)) == "through"
        result = output.until(lambda item: item.get("type") == "result", timeout=60)
        assert result["result"] == "streamed through"
        assert process.wait(timeout=120) == 0
    finally:
        release.set()
        process.wait(timeout=120)  # its output is the reader thread's


def test_a_429_with_retry_after_reaches_the_agent_unchanged(home, fake_api, api_profile, engine, host_gateway):
    """curl in a running bottle posts to the API (the sidecar injects the key); the API's 429
    arrives with its status, retry-after and body as sent, and the audit log says why."""
    release = threading.Event()
    home.agent("limited", "Hold still.")
    home.profile("default", api_profile())
    fake_api.enqueue(held(release))
    process = home.popen("run", "limited", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=120)  # Claude Code holds the first step
        fake_api.enqueue(rate_limited(retry_after=17))
        (agent,) = [c for c in engine.containers.list(filters={"label": "bottle.agent=limited"})
                    if c.labels.get("bottle.role") != "sidecar"]
        body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "tools": [{"name": "Bash"}],
                           "messages": [{"role": "user", "content": "hi"}]})
        script = (f"curl -sS -m 30 -D /tmp/head -o /tmp/body -H 'content-type: application/json' "
                  f"-H \"x-api-key: $ANTHROPIC_API_KEY\" --data '{body}' '{fake_api.url_for(host_gateway)}/v1/messages'"
                  " && cat /tmp/head && echo && cat /tmp/body")
        result = agent.exec_run(["bash", "-c", script])
        assert result.exit_code == 0, result.output
        head, _, answer = result.output.decode().partition("\r\n\r\n\n")
        status_line, *header_lines = head.split("\r\n\r\n")[-1].splitlines()  # after the proxy's CONNECT answer
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}

        assert status_line.split()[1] == "429"
        assert headers["retry-after"] == "17"
        assert json.loads(answer) == {"type": "error", "error": {"type": "rate_limit_error",
                                                                 "message": RATE_LIMIT_MESSAGE},
                                      "request_id": headers["request-id"]}
        audit = home.run("audit", agent.labels["bottle.slug"], "--json")
        rows = [row for row in json.loads(audit.stdout) if row["decision"] == "upstream-status"]
        assert [(row["path"], row["detail"]) for row in rows] == [("/v1/messages",
                                                                  {"status": 429, "retry_after": "17"})]
    finally:
        release.set()
        process.communicate(timeout=120)
