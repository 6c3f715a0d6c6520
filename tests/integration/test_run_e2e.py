"""End to end: the real Claude Code in a real bottle against the fake Messages API.

Claude Code reaches the API only through the sidecar, over TLS re-signed by
the bottle's CA, holding a placeholder key; the sidecar injects the real one.
"""

import json
import threading

from tests.integration.conftest import REAL_API_KEY, REAL_KEY_ENV
from tests.support.fake_anthropic import held, text, tool_use

PROMPT_MARKER = "You are the bottle end-to-end agent; marker 7f3a9c."
SKILL_DESCRIPTION = "Explains how this project names its release branches."


def test_prompt_and_skills_reach_the_model(home, fake_api, api_profile):
    home.skill("release-names", SKILL_DESCRIPTION)
    home.agent("e2e", PROMPT_MARKER, description="end-to-end agent", skills=["release-names"])
    home.profile("default", api_profile())
    fake_api.enqueue(text("Hello from the fake model."))

    result = home.run("run", "e2e", "--prompt", "Say hello.")

    assert result.returncode == 0, result.stderr
    assert "Hello from the fake model." in result.stdout
    main = fake_api.message_requests(main_only=True)
    assert main, f"no conversation request reached the API: {fake_api.requests}"
    first = main[0]
    assert PROMPT_MARKER in fake_api.system_text(first)
    listing = fake_api.all_text(first)
    assert "release-names" in listing and SKILL_DESCRIPTION in listing
    assert first.headers["x-api-key"] == REAL_API_KEY  # injected by the sidecar
    assert "placeholder" not in json.dumps(first.headers)


def test_agent_runs_tools_as_non_root_in_workdir(home, fake_api, api_profile):
    home.agent("tools", "Run what you are asked.")
    home.profile("default", api_profile())
    fake_api.enqueue(tool_use("Bash", {"command": "echo uid=$(id -u) cwd=$(pwd)"}), text("done"))

    result = home.run("run", "tools", "--prompt", "Who are you?")

    assert result.returncode == 0, result.stderr
    tool_results = fake_api.message_requests(main_only=True)[-1]
    assert "uid=1000 cwd=/workspace" in fake_api.all_text(tool_results)


def test_claude_exit_code_becomes_bottles(home, fake_api, api_profile):
    home.agent("badkey", "")
    home.profile("default", api_profile())
    home.env[REAL_KEY_ENV] = "sk-ant-api03-not-the-key-the-api-expects"

    result = home.run("run", "badkey", "--prompt", "hi")

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert any(r.path.startswith("/v1/messages") for r in fake_api.requests)


def test_empty_prompt_adds_no_system_prompt_flag(home, fake_api, api_profile):
    home.agent("plain", "")
    home.profile("default", api_profile())

    result = home.run("run", "plain", "--prompt", "hi")

    assert result.returncode == 0, result.stderr
    plan_files = list(home.state.glob("plain-*/plan.json"))
    assert len(plan_files) == 1
    assert "--append-system-prompt-file" not in plan_files[0].read_text()


def test_real_key_never_enters_the_agent_container(home, fake_api, api_profile, engine):
    """While the agent talks to the API, search its container for the real key."""
    release = threading.Event()
    home.agent("keyhunt", "Wait.")
    home.profile("default", api_profile())
    fake_api.enqueue(held(release))
    process = home.popen("run", "keyhunt", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=120)
        assert fake_api.message_requests(main_only=True)[0].headers["x-api-key"] == REAL_API_KEY
        assert_guest_holds_only_the_placeholder(engine, REAL_API_KEY, "sk-ant-api03-bottle-placeholder-")
    finally:
        release.set()
        process.communicate(timeout=120)


def assert_guest_holds_only_the_placeholder(engine, secret: str, placeholder: str) -> None:
    """Search the one running agent container for *secret*: inspect, every process's
    environment and command line, the whole file system; its environment holds *placeholder*."""
    (agent,) = [c for c in engine.containers.list(filters={"label": "bottle.slug"})
                if c.labels.get("bottle.role") != "sidecar"]
    key = secret.encode()
    assert key not in json.dumps(agent.attrs).encode(), "docker inspect shows the secret"
    processes = agent.exec_run(["sh", "-c", "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline"], user="root").output
    assert placeholder.encode() in processes  # the search sees the agent's environment...
    assert key not in processes  # ...and the real secret is not in it
    assert not _stream_contains(agent.export(), key), "a file in the agent container holds the secret"


def _stream_contains(chunks, needle: bytes) -> bool:
    """Search a byte stream (a container export) without holding it in memory."""
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        if needle in window:
            return True
        tail = window[-len(needle):]
    return False
