"""The real CLI in a subprocess: bad manifests are one short message, never a traceback."""

import json

import pytest

from bottle.plan import Plan


def unknown_key(home):
    return "bad", [home.agent("bad", colour="red"), "`colour`"]


def wrong_type(home):
    return "bad", [home.agent("bad", skills=3), "`skills`"]


def missing_skill(home):
    return "bad", [home.agent("bad", skills=["ghost"]), "`skills`", "'ghost'"]


def not_yaml(home):
    return "bad", [home.agent("bad", text="---\nname: [bad\n---\nbody\n"), "YAML"]


def extends_cycle(home):
    first = home.profile("first", 'extends = "second"\n')
    second = home.profile("second", 'extends = "first"\n')
    home.agent("bad", bottle="first")
    return "bad", [first, second, "`extends`"]


def missing_agent(home):
    return "ghost", ["'ghost'", home.project / ".bottle" / "agents", home.config_dir / "agents"]


def bad_profile_field(home):
    home.agent("bad", bottle="wide")
    return "bad", [home.profile("wide", 'memory = "lots"\n'), "`memory`"]


@pytest.mark.parametrize(
    "case", [unknown_key, wrong_type, missing_skill, not_yaml, extends_cycle, missing_agent, bad_profile_field]
)
def test_bad_manifest_is_one_short_message(home, run_bottle, case):
    agent, fragments = case(home)
    code, out, err = run_bottle("run", agent, "--dry-run")
    assert code == 2
    assert out == ""
    for fragment in fragments:
        assert str(fragment) in err
    assert "Traceback" not in err
    message = err.strip()
    assert message.startswith("bottle: ")
    assert "\n\n" not in message  # one paragraph
    assert len(message.splitlines()) <= 4 and len(message) < 800
    assert not home.state_root.exists()


def test_bad_settings_is_one_short_message(home, run_bottle):
    home.agent("hello")
    home.config("guest_uid = -1\n")
    code, _, err = run_bottle("run", "hello", "--dry-run")
    assert code == 2
    assert str(home.config_file) in err and "`guest_uid`" in err
    assert "Traceback" not in err


@pytest.fixture
def hello(home):
    home.skill("style")
    home.agent("hello", "Say hello.", skills=["style"])


def test_dry_run_json_prints_the_plan(home, run_bottle, hello):
    code, out, err = run_bottle("run", "hello", "--dry-run", "--json", "--prompt", "hi", "--", "--max-turns", "1")
    assert code == 0, err
    plan = Plan.model_validate(json.loads(out))
    assert plan.agent == "hello" and plan.system_prompt == "Say hello."
    assert plan.claude_argv[1:3] == ("-p", "hi") and plan.claude_argv[-2:] == ("--max-turns", "1")
    assert {f.provider for f in plan.files} >= {"prompt", "skills"}
    assert not home.state_root.exists()


def test_dry_run_prints_a_table(home, run_bottle, hello):
    code, out, err = run_bottle("run", "hello", "--dry-run", "--image", "img:flag")
    assert code == 0, err
    assert "plan for bottle hello-" in out
    assert "img:flag" in out
    assert not home.state_root.exists()


COMMANDS = [
    [],
    ["run"],
    ["plugins"],
    ["doctor"],
    ["ls"],
    ["stop"],
    ["gc"],
    ["exec"],
    ["image"],
    ["image", "build"],
    ["image", "bootstrap"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "bottle")
def test_help(run_bottle, command):
    code, out, err = run_bottle(*command, "--help")
    assert code == 0, err
    assert f"bottle {' '.join(command)}".strip() in out
    assert "Usage:" in out
