"""build_plan with the really installed plugins, and write_state."""

import json
import stat

import pytest

from bottle_egress.ca import CA_VARIABLES
from bottle_provisioners.claude import AGENT_BASE_ENV
from pydantic import ValidationError

from bottle.backend import LABEL_AGENT, LABEL_BACKEND, LABEL_SLUG
from bottle.limits import Host, built_in
from bottle.plan import Plan, Resources
from bottle.prepare import build_plan, write_state
from bottle.settings import load_settings

APPEND = "--append-system-prompt-file"


@pytest.fixture
def plan_for(plugins):
    """``plan_for(agent, settings={...}, **build_plan kwargs)``: a plan in the isolated home."""

    def make(agent: str = "agent", *, settings: dict | None = None, **kwargs) -> Plan:
        return build_plan(agent, settings=load_settings(**(settings or {})), plugins=plugins, **kwargs)

    return make


def files_by_provider(plan: Plan) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in plan.files:
        out.setdefault(f.provider, []).append(f)
    return out


# -- claude argv ----------------------------------------------------------------


def test_prompt_flag_when_the_prompt_is_not_empty(home, plan_for):
    home.agent("agent", "Be brief.")
    plan = plan_for()
    at = plan.agent_argv.index(APPEND)
    assert plan.agent_argv[at + 1] == plan.guest.prompt_path == "/home/agent/.bottle/system-prompt.md"
    assert plan.system_prompt == "Be brief."


@pytest.mark.parametrize("prompt", ["", "   \n\n  "])
def test_no_prompt_flag_for_an_empty_prompt(home, plan_for, prompt):
    home.agent("agent", prompt)
    assert APPEND not in plan_for().agent_argv


@pytest.mark.parametrize("prompt", ["", "Be brief."])
def test_prompt_file_is_always_planned(home, plan_for, prompt):
    home.agent("agent", prompt)
    plan = plan_for()
    [prompt_file] = files_by_provider(plan)["prompt"]
    assert prompt_file.host_path == plan.prompt_file == plan.state_dir / "system-prompt.md"
    assert prompt_file.guest_path == plan.guest.prompt_path


@pytest.mark.parametrize(
    ("settings", "skills_dir"),
    [
        ({}, "/home/agent/.claude/skills"),
        ({"guest_home": "/home/bob"}, "/home/bob/.claude/skills"),
        ({"guest_skills_dir": "/opt/skills"}, "/opt/skills"),
    ],
)
def test_skill_files_go_under_the_skills_dir(home, plan_for, settings, skills_dir):
    style, lint = home.skill("style"), home.skill("lint", where="config")
    home.agent("agent", skills=["style", "lint"])
    plan = plan_for(settings=settings)
    assert plan.guest.skills_dir == skills_dir
    assert [(f.host_path, f.guest_path) for f in files_by_provider(plan)["skills"]] == [
        (style, f"{skills_dir}/style"),
        (lint, f"{skills_dir}/lint"),
    ]


def test_guest_home_moves_the_prompt_path(home, plan_for):
    home.agent("agent")
    plan = plan_for(settings={"guest_home": "/home/bob"})
    assert plan.guest.prompt_path == "/home/bob/.bottle/system-prompt.md"
    assert plan.agent_argv[plan.agent_argv.index(APPEND) + 1] == plan.guest.prompt_path


def test_model(home, plan_for):
    home.agent("agent", model="claude-opus-4")
    argv = plan_for().agent_argv
    assert argv[argv.index("--model") + 1] == "claude-opus-4"


def test_no_model_no_flag(home, plan_for):
    home.agent("agent")
    assert "--model" not in plan_for().agent_argv


def test_headless(home, plan_for):
    home.agent("agent")
    plan = plan_for(headless_prompt="fix the build")
    assert plan.headless
    assert plan.agent_argv[:3] == ("claude", "-p", "fix the build")


def test_interactive(home, plan_for):
    home.agent("agent")
    plan = plan_for()
    assert not plan.headless
    assert plan.agent_argv[0] == "claude" and "-p" not in plan.agent_argv
    assert "--dangerously-skip-permissions" in plan.agent_argv


def test_user_claude_args_come_last(home, plan_for):
    home.agent("agent", "Be brief.", model="m")
    argv = plan_for(headless_prompt="go", agent_args=("--max-turns", "5")).agent_argv
    assert argv[-2:] == ("--max-turns", "5")
    assert argv.index(APPEND) < argv.index("--max-turns")
    assert argv.index("--model") < argv.index("--max-turns")


# -- env, resources, backend ------------------------------------------------------


def test_env_precedence(home, plan_for):
    home.profile("strict", '[env]\nFROM_PROFILE = "profile"\nSHARED = "profile"\n')
    home.agent(
        "agent",
        bottle="strict",
        env={"FROM_AGENT": "agent", "SHARED": "agent", "DISABLE_AUTOUPDATER": "agent"},
    )
    env = plan_for(settings={"guest_home": "/home/bob"}).env
    proxy_and_ca = {key for key in env if "PROXY" in key.upper() or key in CA_VARIABLES}
    assert {key: value for key, value in env.items() if key not in proxy_and_ca} == {
        **AGENT_BASE_ENV,
        "DISABLE_AUTOUPDATER": "agent",  # agent over base
        "FROM_AGENT": "agent",
        "FROM_PROFILE": "profile",
        "SHARED": "profile",  # profile over agent
        "HOME": "/home/bob",  # the guest's home, always
    }


def test_plugin_env_and_placeholders_override_the_profile(home, plan_for, monkeypatch):
    home.profile(
        "routed",
        '[env]\nANTHROPIC_API_KEY = "sk-ant-real-in-profile"\n'
        '[[credentials]]\nhost = "api.anthropic.com"\nheader = "x-api-key"\nenv = "ANTHROPIC_API_KEY"\n',
    )
    home.agent("agent", bottle="routed")
    plan = plan_for()
    assert plan.env["HTTPS_PROXY"] == plan.sections["egress"].proxy_url(plan.sidecar)
    assert plan.env["ANTHROPIC_API_KEY"] == plan.sections["egress"].credentials[0].placeholder
    assert "sk-ant-real" not in plan.model_dump_json()


def test_base_env_quiets_claude(home, plan_for):
    home.agent("agent")
    env = plan_for().env
    assert env["DISABLE_TELEMETRY"] == env["DISABLE_AUTOUPDATER"] == "1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"


def test_resources_and_image_from_the_profile(home, plan_for):
    home.profile("base", 'image = "img:profile"\nmemory = "2g"\npids = 100\ndisk = "5g"\n')
    home.profile("big", 'extends = "base"\ncpus = 0.5\ndisk = "unlimited"\n')
    home.agent("agent", bottle="big")
    plan = plan_for()
    assert plan.resources == Resources(cpus=0.5, memory="2g", pids=100, disk=None)
    assert plan.image == "img:profile"
    assert plan.profile == "big"
    assert plan.profile_files == (home.config_dir / "bottles" / "big.toml", home.config_dir / "bottles" / "base.toml")


def test_no_profile_the_built_in_limits_and_settings_image(home, plan_for):
    home.agent("agent")
    plan = plan_for(settings={"image": "img:settings"})
    assert plan.resources == built_in(Host.this_one())
    assert (plan.image, plan.profile, plan.profile_files) == ("img:settings", "default", ())


def test_missing_profile_names_the_agent_file_and_field(home, plan_for, usage_error):
    # the mistake is in the agent file (its `bottle` field), as for a missing skill
    agent = home.agent("agent", bottle="ghost")
    usage_error(lambda: plan_for(), agent, "`bottle`", "'ghost'", home.config_dir / "bottles" / "ghost.toml")


def test_backend_defaults_to_the_setting(home, plan_for):
    home.agent("agent")
    plan = plan_for()
    assert plan.backend == "docker"
    assert plan.labels[LABEL_BACKEND] == "docker"


@pytest.mark.parametrize("where", ["argument", "profile", "setting"])
def test_unknown_backend_is_a_usage_error(home, plan_for, usage_error, where):
    kwargs: dict = {}
    if where == "profile":
        home.profile("odd", 'backend = "nosuch"\n')
        home.agent("agent", bottle="odd")
    else:
        home.agent("agent")
    if where == "argument":
        kwargs["backend"] = "nosuch"
    if where == "setting":
        kwargs["settings"] = {"backend": "nosuch"}
    usage_error(lambda: plan_for(**kwargs), "'nosuch'", "docker")


def test_backend_argument_beats_profile(home, plan_for):
    home.profile("odd", 'backend = "nosuch"\n')
    home.agent("agent", bottle="odd")
    assert plan_for(backend="docker").backend == "docker"


def test_slug_and_labels(home, plan_for):
    home.agent("My.Agent")
    plan, other = plan_for("My.Agent"), plan_for("My.Agent")
    assert plan.slug.startswith("my.agent-")
    assert plan.slug != other.slug
    assert plan.labels[LABEL_SLUG] == plan.slug and plan.labels[LABEL_AGENT] == "My.Agent"
    assert plan.state_dir == home.state_root / plan.slug


# -- purity and shape ------------------------------------------------------------


def test_building_a_plan_has_no_side_effect(home, plan_for):
    home.skill("style")
    home.profile("strict", "cpus = 1\n")
    home.agent("agent", "Be brief.", bottle="strict", skills=["style"])
    before = home.tree()
    plan = plan_for(headless_prompt="go")
    assert home.tree() == before
    assert not home.state_root.exists() and not plan.state_dir.exists()


def test_plan_is_immutable(home, plan_for):
    home.agent("agent")
    plan = plan_for()
    with pytest.raises(ValidationError):
        plan.slug = "other"
    with pytest.raises(ValidationError):
        plan.guest.home = "/root"
    with pytest.raises(ValidationError):
        plan.files[0].guest_path = "/etc/passwd"
    with pytest.raises((TypeError, AttributeError)):
        plan.agent_argv.append("--evil")  # tuples, not lists


@pytest.mark.parametrize("field", ["env", "labels"])
def test_plan_mappings_are_read_only(home, plan_for, field):
    # provisioners receive the plan before the agent starts with plan.env:
    # a mutable dict would let one change what launch runs
    home.agent("agent")
    mapping = getattr(plan_for(), field)
    with pytest.raises(TypeError):
        mapping["LD_PRELOAD"] = "/tmp/evil.so"


def test_plan_json_round_trip(home, plan_for):
    home.skill("style")
    home.profile("p", 'cpus = 1.5\nmemory = "1g"\n[env]\nA = "b"\n')
    home.agent("agent", "Be brief.", bottle="p", skills=["style"], model="m", env={"X": "y"})
    plan = plan_for(headless_prompt="go", agent_args=("--max-turns", "2"))
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert json.loads(plan.model_dump_json())["agent_argv"] == list(plan.agent_argv)


# -- write_state ------------------------------------------------------------------


@pytest.fixture
def written(home, plan_for):
    home.agent("agent", "Be brief.\n\nReally.")
    plan = plan_for()
    return plan, write_state(plan)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_state_dir_is_private(written):
    plan, state_dir = written
    assert state_dir == plan.state_dir
    assert mode(state_dir) == 0o700


def test_write_state_prompt_file(written):
    plan, _ = written
    assert plan.prompt_file.read_text() == "Be brief.\n\nReally."
    assert mode(plan.prompt_file) == 0o600


def test_write_state_plan_json(written):
    plan, state_dir = written
    assert Plan.model_validate_json((state_dir / "plan.json").read_text()) == plan


def test_write_state_refuses_an_existing_state_dir(written):
    plan, _ = written
    with pytest.raises(FileExistsError):
        write_state(plan)
    assert plan.prompt_file.read_text() == "Be brief.\n\nReally."


# -- the git gate's refs ----------------------------------------------------------


@pytest.mark.parametrize(("git", "front", "work", "start_refs", "push_refs"), [
    ("", {}, "bottle/{slug}", ("HEAD",), ("refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*")),
    ("", {"branch": "feature/x"}, "bottle/{slug}", ("HEAD", "refs/heads/feature/x"),
     ("refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*")),
    ('push_refs = ["refs/heads/bottle/*"]', {"branch": "bottle/shared"}, "bottle/shared",
     ("HEAD", "refs/heads/bottle/shared"), ("refs/heads/bottle/*",)),
    ('fetch_refs = ["refs/heads/release", "refs/tags/{slug}-*"]', {}, "bottle/{slug}",
     ("refs/heads/release", "refs/tags/{slug}-*"), ("refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*")),
], ids=["default", "agent-branch-outside", "agent-branch-allowed", "fetch-refs"])
def test_the_gate_gets_the_bottles_own_refs_and_what_it_starts_from(home, plan_for, tmp_path, git, front, work,
                                                                     start_refs, push_refs):
    """``{slug}`` becomes the bottle's slug in the plan; an agent's `branch` it may not push is where it starts."""
    (tmp_path / "up.git").mkdir()
    home.profile("default", f'[git]\nupstream = "{tmp_path / "up.git"}"\n{git}\n')
    home.agent("agent", **front)
    plan = plan_for()
    slugged = lambda patterns: tuple(p.replace("{slug}", plan.slug) for p in patterns)  # noqa: E731
    assert (plan.sections["git"].work_branch, plan.sections["git"].start_from) == (work.replace("{slug}", plan.slug), front.get("branch"))
    assert (plan.sections["git"].fetch_refs, plan.sections["git"].push_refs) == (slugged(start_refs), slugged(push_refs))
    assert plan.sections["git"].max_push_refs == 20


def test_fetch_refs_must_be_full_ref_names_or_head(home, plan_for, tmp_path, usage_error):
    home.profile("default", f'[git]\nupstream = "{tmp_path}"\nfetch_refs = ["main"]\n')
    home.agent("agent")
    usage_error(plan_for, "git.fetch_refs", "'main' is not a full ref name", "or are HEAD")
