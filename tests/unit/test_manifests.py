"""Agent files (Markdown + YAML front matter) and bottle profiles (TOML)."""

import pytest

from bottle.manifests.agent import FOREIGN_FIELDS, find_agent, parse_agent_file
from bottle.manifests.profile import Profile, load_profile
from bottle.prepare import build_plan
from bottle.settings import load_settings


@pytest.fixture
def find(home):
    return lambda ref: find_agent(ref, home.project, home.config_dir)


@pytest.fixture
def profile(home):
    return lambda name: load_profile(name, home.config_dir)


# -- agents -------------------------------------------------------------------


def test_valid_agent_fields_and_prompt(home, find):
    path = home.agent(
        "reviewer",
        "Review the diff.\n\nBe terse.\n",
        description="Reviews code",
        bottle="strict",
        skills=["commit-style", "tests"],
        model="opus",
        env={"LANG": "C.UTF-8"},
    )
    agent = find("reviewer")
    assert agent.path == path
    assert agent.prompt == "Review the diff.\n\nBe terse."
    assert (agent.name, agent.description, agent.bottle, agent.model) == ("reviewer", "Reviews code", "strict", "opus")
    assert agent.skills == ("commit-style", "tests")
    assert agent.env == {"LANG": "C.UTF-8"}


def test_agent_defaults(home, find):
    home.agent("plain", "")
    agent = find("plain")
    assert (agent.bottle, agent.skills, agent.model, agent.env, agent.prompt) == ("default", (), None, {}, "")


def test_agent_in_config_dir(home, find):
    path = home.agent("mine", where="config")
    assert find("mine").path == path


def test_prompt_keeps_later_triple_dashes(home, find):
    home.agent("dashes", "before\n---\nafter")
    assert find("dashes").prompt == "before\n---\nafter"


@pytest.mark.parametrize(
    ("front", "field"),
    [
        ("colour: red", "colour"),
        ("skills: 3", "skills"),
        ("env: [A, B]", "env"),
        ("env: {not-a-var: x}", "env"),
        ("bottle: ../escape", "bottle"),
        ("model: [a, b]", "model"),
    ],
)
def test_invalid_front_matter_names_file_and_field(home, find, usage_error, front, field):
    path = home.agent("bad", text=f"---\nname: bad\n{front}\n---\nbody\n")
    usage_error(lambda: find("bad"), path, f"`{field}")


@pytest.mark.parametrize("name", ["CURL_HOME", "LD_PRELOAD", "ld_library_path", "HOME", "PATH", "BASH_ENV",
                                  "NODE_OPTIONS", "https_proxy", "NO_PROXY", "SSL_CERT_FILE", "XDG_CONFIG_HOME",
                                  "CLAUDE_CONFIG_DIR"])
def test_env_may_not_set_what_decides_how_the_guests_tools_behave(home, find, profile, usage_error, name):
    """A variable that steers the guest's own programs (the supervise hooks' curl, the
    proxy, the loader) is refused in an agent file and in a profile, naming the field."""
    agent = home.agent("steer", env={"LANG": "C.UTF-8", name: "/workspace/evil"})
    usage_error(lambda: find("steer"), agent, f"field `env.{name}`: may not be set", "bottle decides it")
    path = home.profile("steer", f'[env]\n{name} = "/workspace/evil"\n')
    usage_error(lambda: profile("steer"), path, f"field `env.{name}`: may not be set")


def test_env_keeps_what_configures_the_agent(home, find):
    home.agent("fine", env={"ANTHROPIC_BASE_URL": "https://x", "CLAUDE_CODE_MAX_RETRIES": "0", "TZ": "UTC",
                            "LANG": "C.UTF-8", "HOMEPAGE": "x", "MY_PATH": "y"})
    assert set(find("fine").env) == {"ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES", "TZ", "LANG", "HOMEPAGE", "MY_PATH"}


# An agent CLI's own subagent file, as that CLI's documentation writes one.
SUBAGENT = """---
name: code-reviewer
description: Expert code review specialist. Use proactively after writing code.
tools: Read, Grep, Glob, Bash
model: sonnet
color: blue
permissionMode: default
---
You are a senior code reviewer.
"""


def test_a_subagent_file_of_the_agent_cli_loads_and_plans(home, find, plugins):
    path = home.agent("code-reviewer", text=SUBAGENT)
    agent = find("code-reviewer")
    assert (agent.name, agent.model, agent.prompt) == ("code-reviewer", "sonnet", "You are a senior code reviewer.")
    assert agent.description.startswith("Expert code review")
    assert [note.split("`")[1] for note in agent.notes] == ["tools", "color", "permissionMode"]
    plan = build_plan("code-reviewer", settings=load_settings(), plugins=plugins)
    assert plan.agent_file == path
    assert plan.agent_argv[plan.agent_argv.index("--model") + 1] == "sonnet"
    assert plan.system_prompt == "You are a senior code reviewer."
    assert "code-reviewer.md: field `color` has no effect in a bottle: bottle shows no agent colours." in plan.notes
    assert not {"Read", "Grep", "blue"} & set(plan.agent_argv)  # ignored: nothing of them reaches the agent
    assert plan.notes[: -len(agent.notes)] == plugins.load_profile("default", home.config_dir).notes


@pytest.mark.parametrize("field", sorted(FOREIGN_FIELDS))
def test_each_foreign_field_is_ignored_with_a_note(home, find, field):
    """Whatever the value's shape (a list, a mapping, a number), the field is taken and has no effect."""
    home.agent("sub", text=f"---\nname: sub\n{field}: {{some: [value, 3]}}\n---\nbody\n")
    agent = find("sub")
    assert agent.notes == (f"sub.md: field `{field}` has no effect in a bottle: {FOREIGN_FIELDS[field]}.",)
    assert not hasattr(agent, field)


def test_no_foreign_field_no_note(home, find):
    home.agent("plain", description="x", model="opus", skills=["a"])
    assert find("plain").notes == ()


@pytest.mark.parametrize(("model", "expected"),
                         [("inherit", None), ("sonnet", "sonnet"), ("claude-opus-4", "claude-opus-4")])
def test_model_inherit_is_the_agents_default(home, find, plugins, model, expected):
    home.agent("sub", model=model)
    assert find("sub").model == expected
    argv = build_plan("sub", settings=load_settings(), plugins=plugins).agent_argv
    assert (argv[argv.index("--model") + 1] if "--model" in argv else None) == expected


@pytest.mark.parametrize("skills", ["commit-style, tests", "commit-style,tests,", ["commit-style", "tests"]])
def test_skills_as_a_list_or_separated_by_commas(home, find, skills):
    home.agent("sub", skills=skills)
    assert find("sub").skills == ("commit-style", "tests")


@pytest.mark.parametrize("front", ["modle: opus", "Color: blue", "tool: Read", "notes: [x]", "prompt: hi"])
def test_a_field_of_neither_format_is_still_refused(home, find, usage_error, front):
    path = home.agent("typo", text=f"---\nname: typo\ncolor: blue\n{front}\n---\nbody\n")
    usage_error(lambda: find("typo"), path, f"field `{front.split(':')[0]}`: unknown key")


def test_env_numbers_booleans_and_dates_are_taken_as_written(home, find):
    home.agent("envy", text="---\nname: envy\nenv:\n  PORT: 8080\n  DEBUG: true\n  QUIET: False\n"
                            "  VERSION: 1.10\n  MODE: 0755\n  DAY: 2024-01-02\n  NAME: plain\n  QUOTED: '7'\n---\n")
    assert find("envy").env == {"PORT": "8080", "DEBUG": "true", "QUIET": "False", "VERSION": "1.10",
                                "MODE": "0755", "DAY": "2024-01-02", "NAME": "plain", "QUOTED": "7"}


@pytest.mark.parametrize("value", ["[a, b]", "{a: 1}", "null", "", "~"])
def test_env_lists_maps_and_null_are_refused(home, find, usage_error, value):
    path = home.agent("envy", text=f"---\nname: envy\nenv:\n  X: {value}\n---\n")
    usage_error(lambda: find("envy"), path, "field `env.X`")


def test_only_env_values_are_kept_as_written(home, find, usage_error):
    """Elsewhere a number stays a number: ``model: 3`` is still not a model name."""
    path = home.agent("num", text="---\nname: num\nmodel: 3\nenv: {PORT: 1}\n---\n")
    usage_error(lambda: find("num"), path, "field `model`")


def test_profile_env_numbers_are_refused(home, profile, usage_error):
    """TOML has no implicit types: a number in a profile's env is one the writer typed, to be quoted."""
    path = home.profile("numbers", "[env]\nPORT = 8080\n")
    usage_error(lambda: profile("numbers"), path, "field `env.PORT`")


def test_missing_name_is_reported(home, find, usage_error):
    path = home.agent("anon", text="---\ndescription: no name\n---\nbody\n")
    usage_error(lambda: find("anon"), path, "`name`", "missing")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("---\nname: [unclosed\n---\nbody\n", "not valid YAML"),
        ("Just a prompt, no front matter.\n", "front matter"),
        ("---\nname: open\nbody without end\n", "closing '---'"),
        ("---\n- a\n- list\n---\nbody\n", "mapping"),
    ],
    ids=["not-yaml", "no-front-matter", "no-closing", "not-a-mapping"],
)
def test_unparseable_agent_file(home, find, usage_error, text, problem):
    path = home.agent("broken", text=text)
    usage_error(lambda: find("broken"), path, problem)


def test_yaml_error_gives_the_file_line(home, find, usage_error):
    home.agent("broken", text="---\nname: broken\ndescription: [unclosed\n---\n")
    # the problem is detected on line 4 of the file (the closing ---), not of the front matter
    usage_error(lambda: find("broken"), "line 4")


def test_name_must_match_file_name(home, find, usage_error):
    path = home.agent("alpha", text="---\nname: beta\n---\nbody\n")
    usage_error(lambda: find("alpha"), path, "`name`", "'alpha'", "'beta'")


def test_same_agent_in_repo_and_config_dir_is_an_error(home, find, usage_error):
    repo = home.agent("twin", where="repo")
    user = home.agent("twin", where="config")
    usage_error(lambda: find("twin"), repo, user, "twice")


def test_missing_agent_names_both_dirs_and_known_agents(home, find, usage_error):
    home.agent("known-one")
    home.agent("known-two", where="config")
    usage_error(
        lambda: find("nope"),
        "'nope'",
        home.project / ".bottle" / "agents",
        home.config_dir / "agents",
        "known-one, known-two",
    )


@pytest.mark.parametrize("ref", ["elsewhere/solo.md", "solo-at-root.md"])
def test_agent_by_path(home, find, ref):
    path = home.project / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.stem
    path.write_text(f"---\nname: {name}\n---\nhi\n")
    agent = find(ref)
    assert agent.path == path
    assert agent.path.is_absolute()
    assert agent.prompt == "hi"


def test_agent_by_absolute_path(home, find):
    path = home.agent("abs")
    assert find(str(path)).name == "abs"


def test_agent_path_that_does_not_exist(home, find, usage_error):
    usage_error(lambda: find("nowhere/ghost.md"), "nowhere/ghost.md", "does not exist")


def test_agent_file_not_utf8(home, usage_error):
    path = home.project / "latin.md"
    path.write_bytes(b"---\nname: latin\n---\ncaf\xe9\n")
    usage_error(lambda: parse_agent_file(path), path, "cannot read")


@pytest.mark.parametrize("ref", ["..", "bad name", "-dash"])
def test_invalid_agent_name(find, usage_error, ref):
    usage_error(lambda: find(ref), repr(ref))


# -- profiles -----------------------------------------------------------------


def test_extends_chain_merges_child_over_parent(home, profile):
    base = home.profile(
        "base",
        'backend = "docker"\nimage = "img:base"\ncpus = 2\nmemory = "1g"\npids = 50\n'
        '[env]\nA = "base"\nB = "base"\n',
    )
    mid = home.profile("mid", 'extends = "base"\nimage = "img:mid"\n[env]\nB = "mid"\nC = "mid"\n')
    child = home.profile("child", 'extends = "mid"\ncpus = 4\n[env]\nC = "child"\n')
    assert profile("child") == Profile(
        name="child",
        files=(child, mid, base),
        backend="docker",
        image="img:mid",
        cpus=4,
        memory="1g",
        pids=50,
        env={"A": "base", "B": "mid", "C": "child"},
    )


def test_parent_is_not_changed_by_a_child(home, profile):
    home.profile("base", '[env]\nA = "base"\n')
    home.profile("child", 'extends = "base"\n[env]\nA = "child"\n')
    profile("child")
    assert profile("base").env == {"A": "base"}


@pytest.mark.parametrize("cycle", [["a", "b"], ["a", "b", "c"], ["self"]])
def test_extends_cycle_names_every_file(home, profile, usage_error, cycle):
    files = [home.profile(name, f'extends = "{cycle[(i + 1) % len(cycle)]}"\n') for i, name in enumerate(cycle)]
    usage_error(lambda: profile(cycle[0]), "`extends`", "cycle", *files)


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('colour = "red"', "colour"),
        ('memory = "4 GB"', "memory"),
        ("memory = 4", "memory"),
        ("cpus = 0", "cpus"),
        ('cpus = "two"', "cpus"),
        ("pids = -1", "pids"),
        ('backend = "../x"', "backend"),
        ("env = { A = 1 }", "env"),
    ],
)
def test_invalid_profile_names_file_and_field(home, profile, usage_error, toml, field):
    path = home.profile("bad", toml + "\n")
    usage_error(lambda: profile("bad"), path, f"`{field}")


def test_invalid_parent_profile_names_the_parent(home, profile, usage_error):
    home.profile("child", 'extends = "parent"\n')
    parent = home.profile("parent", 'memory = "lots"\n')
    usage_error(lambda: profile("child"), parent, "`memory`")


def test_profile_not_toml(home, profile, usage_error):
    path = home.profile("broken", "this is = = not toml\n")
    usage_error(lambda: profile("broken"), path, "TOML")


@pytest.mark.parametrize("memory", ["512m", "4g", "4G", "1024", "100k"])
def test_memory_sizes_accepted(home, profile, memory):
    home.profile("sized", f'memory = "{memory}"\n')
    assert profile("sized").memory == memory


def test_missing_profile_names_the_expected_file(home, profile, usage_error):
    home.profile("other")
    usage_error(lambda: profile("nope"), home.config_dir / "bottles" / "nope.toml", "Known profiles: other")


def test_missing_parent_names_the_child_and_extends(home, profile, usage_error):
    child = home.profile("child", 'extends = "ghost"\n')
    usage_error(lambda: profile("child"), child, "`extends`", "'ghost'", home.config_dir / "bottles" / "ghost.toml")


def test_missing_default_parent_is_an_error(home, profile, usage_error):
    # only a *top-level* absent `default` is fine; extending a missing one is a mistake
    child = home.profile("child", 'extends = "default"\n')
    usage_error(lambda: profile("child"), child, "`extends`", "'default'")


def test_present_default_profile_is_read(home, profile):
    path = home.profile("default", "cpus = 1.5\n")
    assert (profile("default").cpus, profile("default").files) == (1.5, (path,))


def test_profiles_are_never_read_from_the_repo(home, profile, usage_error):
    (home.project / ".bottle" / "bottles").mkdir(parents=True)
    (home.project / ".bottle" / "bottles" / "wide.toml").write_text('image = "evil"\n')
    usage_error(lambda: profile("wide"), "'wide'")


def test_invalid_profile_name(profile, usage_error):
    usage_error(lambda: profile("../../etc/passwd"), "bottle profile name")
