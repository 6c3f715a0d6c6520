"""The real CLI in a subprocess: bad manifests and a missing engine are one short message, never a traceback."""

import json
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from bottle.backend import Availability, BottleInfo
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


def steering_env(home):
    return "bad", [home.agent("bad", env={"CURL_HOME": "/workspace/.evil"}), "`env.CURL_HOME`", "may not be set"]


def steering_profile_env(home):
    home.agent("bad", bottle="steer")
    return "bad", [home.profile("steer", '[env]\nLD_PRELOAD = "/workspace/evil.so"\n'), "`env.LD_PRELOAD`"]


@pytest.mark.parametrize(
    "case", [unknown_key, wrong_type, missing_skill, not_yaml, extends_cycle, missing_agent, bad_profile_field,
             steering_env, steering_profile_env]
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
    assert plan.agent_argv[1:3] == ("-p", "hi") and plan.agent_argv[-2:] == ("--max-turns", "1")
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


#: A Docker engine that cannot answer: no socket at that path. smolvm's
#: sidecar runs on Docker, so it cannot run either, KVM or not.
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/bottle-test/docker.sock"}


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["gc"], ["proposals"], ["proposals", "--json"]],
                         ids=" ".join)
def test_without_an_engine_listing_fails_naming_each_backend(home, run_bottle, command):
    code, out, err = run_bottle(*command, env=NO_ENGINE)

    assert code == 1, (out, err)
    assert out == ""  # not "no bottles" / "nothing to remove" / "no pending proposals"
    assert err.startswith("bottle: No backend answers, so bottle cannot see any bottle:")
    assert "\n  docker: No Docker engine answers at unix:///nonexistent/bottle-test/docker.sock" in err
    assert "dockerd" in err and "DOCKER_HOST" in err  # how to start one
    assert "\n  smolvm: " in err
    assert "Traceback" not in err


def test_without_an_engine_doctor_reports_everything_then_fails(home, run_bottle):
    code, out, err = run_bottle("doctor", env=NO_ENGINE)

    assert code == 1, (out, err)
    assert "backend docker     NO  No Docker engine answers" in out and "backend smolvm     NO " in out
    assert "config  state root" in out  # the whole report, not only the backends
    assert err == "bottle: No backend can run here (docker, smolvm); the report says why.\n"

    code, out, err = run_bottle("doctor", "--json", env=NO_ENGINE)

    assert code == 1, (out, err)
    report = json.loads(out)
    assert {name: result["available"] for name, result in report["backends"].items()} == {"docker": False, "smolvm": False}
    assert "state root" in report["config"]
    assert "No backend can run here" in err and "Traceback" not in err


class Listing:
    """A backend as `bottle ls` sees it: whether it can run here, and its bottles."""

    def __init__(self, availability, *slugs):
        self._availability = availability
        self.slugs = slugs

    def availability(self):
        return self._availability

    def list(self):
        assert self._availability.ok, "an unavailable backend was asked for its bottles"
        return [BottleInfo(slug, "agent", "up", "running", "", None, "") for slug in self.slugs]


def test_with_one_backend_down_the_others_bottles_are_listed_and_it_is_named(home, monkeypatch):
    from bottle.cli import common
    from bottle.cli.manage import ls

    backends = {"up": Listing(Availability(True), "first-1a2b"), "down": Listing(Availability(False, "no engine"))}
    monkeypatch.setattr(common, "settings_and_plugins", lambda: (None, SimpleNamespace(backends=backends)))
    app = typer.Typer()
    app.command()(ls)

    result = CliRunner().invoke(app, [])

    assert result.exit_code == 0, result.output
    assert "first-1a2b" in result.stdout
    assert result.stderr == "bottle: backend 'down' cannot run here, so its bottles are not seen (`bottle doctor` says why).\n"
