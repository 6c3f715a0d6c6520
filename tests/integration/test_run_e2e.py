"""End to end: the real Claude Code in a real bottle against the fake Messages API."""

from tests.integration.conftest import api_profile
from tests.support.fake_anthropic import tool_use, text

PROMPT_MARKER = "You are the bottle end-to-end agent; marker 7f3a9c."
SKILL_DESCRIPTION = "Explains how this project names its release branches."


def test_prompt_and_skills_reach_the_model(home, fake_api, host_gateway):
    home.skill("release-names", SKILL_DESCRIPTION)
    home.agent("e2e", PROMPT_MARKER, description="end-to-end agent", skills=["release-names"])
    home.profile("default", api_profile(fake_api, host_gateway))
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
    assert first.headers["x-api-key"] == "sk-ant-api03-bottle-test-key"


def test_agent_runs_tools_as_non_root_in_workdir(home, fake_api, host_gateway):
    home.agent("tools", "Run what you are asked.")
    home.profile("default", api_profile(fake_api, host_gateway))
    fake_api.enqueue(tool_use("Bash", {"command": "echo uid=$(id -u) cwd=$(pwd)"}), text("done"))

    result = home.run("run", "tools", "--prompt", "Who are you?")

    assert result.returncode == 0, result.stderr
    tool_results = fake_api.message_requests(main_only=True)[-1]
    assert "uid=1000 cwd=/workspace" in fake_api.all_text(tool_results)


def test_claude_exit_code_becomes_bottles(home, fake_api, host_gateway):
    home.agent("badkey", "")
    home.profile("default", api_profile(fake_api, host_gateway).replace("sk-ant-api03-bottle-test-key", "sk-ant-wrong"))

    result = home.run("run", "badkey", "--prompt", "hi")

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert any(r.path.startswith("/v1/messages") for r in fake_api.requests)


def test_empty_prompt_adds_no_system_prompt_flag(home, fake_api, host_gateway):
    home.agent("plain", "")
    home.profile("default", api_profile(fake_api, host_gateway))

    result = home.run("run", "plain", "--prompt", "hi")

    assert result.returncode == 0, result.stderr
    plan_files = list(home.state.glob("plain-*/plan.json"))
    assert len(plan_files) == 1
    assert "--append-system-prompt-file" not in plan_files[0].read_text()
