"""The plugin manager: entry points, blocking and allowing, pluggy's checks, the registries
(backends, commands), the hooks plugins publish for each other, the agent command, failing closed."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pluggy
import pytest
import typer

from bottle import hookimpl
from bottle_egress import allowlist as egress_control
from bottle.errors import BottleError, EnvironmentProblem, UsageError
from bottle.plan import AgentCommand
from bottle.plugins import command_names, load_plugins
from bottle.prepare import build_plan
from bottle.settings import load_settings
from bottle_supervise_sidecar.proposals import Queue
from bottle_supervise.desk import QUEUE_FILE, answer, prepare_queue

BUILT_INS = {
    "claude": ("bottle-provisioners", "bottle_agent_command"),
    "core": ("bottle", "bottle_register_commands"),
    "docker": ("bottle-backend-docker", "bottle_register_backends"),
    "ca": ("bottle-egress", "bottle_plan_files"),
    "egress": ("bottle-egress", "bottle_supervise_grant"),
    "git": ("bottle-git", "bottle_provision_git"),
    "images": ("bottle-images", "bottle_register_commands"),
    "prompt": ("bottle-provisioners", "bottle_plan_files"),
    "skills": ("bottle-provisioners", "bottle_plan_files"),
    "supervise": ("bottle-supervise", "bottle_addhooks"),
}


def by_name(plugins) -> dict:
    return {info.name: info for info in plugins.info()}


def write_plugin(site: Path, name: str, source: str) -> str:
    """Install entry point *name* of a distribution ``test-NAME`` in *site*, its module holding *source*; its module's name."""
    module = f"bottle_test_plugin_{name.replace('-', '_')}"
    dist_info = site / f"{module}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: test-{name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[bottle]\n{name} = {module}\n")
    return module


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(name, source)``: a plugin installed as any other is, for load_plugins in this process."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules = []
    yield lambda name, source: modules.append(write_plugin(site, name, source))
    for module in modules:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_built_ins_load_from_their_own_distributions(plugins, name):
    distribution, hook = BUILT_INS[name]
    info = by_name(plugins)[name]
    assert info.distribution == distribution
    assert info.version
    assert hook in info.hooks
    assert name not in plugins.failures


def test_prompt_hooks(plugins):
    assert {"bottle_plan_files", "bottle_plan_agent_args"} <= set(by_name(plugins)["prompt"].hooks)


def test_docker_backend_registered(plugins):
    assert plugins.backend("docker").name == "docker"


def test_disabled_plugins_are_not_loaded():
    plugins = load_plugins(disabled=["skills", "docker"])
    assert {"skills", "docker"}.isdisjoint(by_name(plugins))
    assert "prompt" in by_name(plugins)
    assert plugins.disabled == ("skills", "docker")
    assert "docker" not in plugins.backends
    planners = [impl.plugin_name for impl in plugins.hook.bottle_plan_files.get_hookimpls()]
    assert "prompt" in planners and "skills" not in planners


def test_disabled_backend_is_an_unknown_backend(usage_error):
    usage_error(lambda: load_plugins(disabled=["docker"]).backend("docker"), "'docker'", "Installed:")


# -- backends registered twice -----------------------------------------------------


def backend_plugin(backend_name: str):
    """A tiny in-process plugin registering one backend called *backend_name*."""

    class Plugin:
        @hookimpl
        def bottle_register_backends(self, register):
            register(SimpleNamespace(name=backend_name))

    return Plugin()


def test_same_backend_name_twice_names_both_plugins():
    plugins = load_plugins(disabled=["docker"])
    plugins.manager.register(backend_plugin("twin"), name="first-plugin")
    plugins.manager.register(backend_plugin("twin"), name="second-plugin")
    with pytest.raises(BottleError) as info:
        plugins.backends  # noqa: B018 -- registering them is what fails
    assert "'twin'" in str(info.value)
    assert "'first-plugin'" in str(info.value) and "'second-plugin'" in str(info.value)


def test_an_in_process_backend_sits_beside_docker():
    plugins = load_plugins()
    plugins.manager.register(backend_plugin("extra"), name="extra-plugin")
    assert {"docker", "extra"} <= set(plugins.backends)
    assert by_name(plugins)["extra-plugin"].distribution == "(registered in-process)"


# -- through the real CLI ---------------------------------------------------------


@pytest.fixture
def broken_plugin_path(tmp_path):
    """A directory for PYTHONPATH holding an installed-looking plugin that raises on import."""
    site = tmp_path / "site"
    write_plugin(site, "broken", 'raise RuntimeError("boom: the plugin is broken")\n')
    return site


def plugins_json(run_bottle, **env) -> tuple[dict, str]:
    code, out, err = run_bottle("plugins", "--json", env=env)
    assert code == 0, err
    return json.loads(out), err


def test_cli_lists_built_ins(run_bottle):
    report, _ = plugins_json(run_bottle)
    assert set(BUILT_INS) <= {p["name"] for p in report["plugins"]}
    assert "docker" in report["backends"]
    assert report["failed"] == {}


def test_broken_plugin_is_reported_and_the_others_still_load(run_bottle, broken_plugin_path):
    pythonpath = os.pathsep.join(filter(None, [str(broken_plugin_path), os.environ.get("PYTHONPATH")]))
    report, err = plugins_json(run_bottle, PYTHONPATH=pythonpath)
    assert "RuntimeError: boom: the plugin is broken" in report["failed"]["broken"]
    assert set(BUILT_INS) <= {p["name"] for p in report["plugins"]}
    assert "broken" not in {p["name"] for p in report["plugins"]}
    assert "'broken'" in err and "boom: the plugin is broken" in err
    assert "Traceback" not in err


def test_cli_honours_bottle_disable_plugins(run_bottle):
    report, _ = plugins_json(run_bottle, BOTTLE_DISABLE_PLUGINS="skills")
    names = {p["name"] for p in report["plugins"]}
    assert "skills" not in names
    assert {"docker", "prompt"} <= names
    assert report["disabled"] == ["skills"]


def cli_commands(run_bottle, **env) -> list[str]:
    """The command names ``bottle --help`` lists."""
    code, out, err = run_bottle("--help", env=env)
    assert code == 0, err
    listing = out.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split()]


def test_cli_honours_bottle_plugins(run_bottle):
    report, _ = plugins_json(run_bottle, BOTTLE_PLUGINS="docker")
    assert {p["name"] for p in report["plugins"]} == {"core", "docker"}
    assert {"prompt", "egress", "supervise"} <= set(report["not_allowed"])


def test_cli_lists_what_each_distribution_provides(run_bottle):
    report, _ = plugins_json(run_bottle)
    distributions = {d["name"]: d for d in report["distributions"]}
    core = distributions["bottle"]
    assert core["plugins"] == ["core"]
    assert {"run", "plugins", "doctor", "audit"} <= set(core["commands"]) and "egress" not in core["commands"]
    assert {"bottle_agent_command", "bottle_plan_files"} <= set(distributions["bottle-provisioners"]["hooks"])
    assert set(distributions["bottle-egress"]["plugins"]) == {"ca", "egress"}
    assert distributions["bottle-egress"]["commands"] == ["egress", "usage"]
    assert distributions["bottle-images"]["commands"] == ["image"]
    supervise = distributions["bottle-supervise"]
    assert "bottle_addhooks" in supervise["hooks"]
    assert {"proposals", "answer", "supervise"} <= set(supervise["commands"])
    assert distributions["bottle-backend-docker"]["backends"] == ["docker"]
    assert {p["name"]: p for p in report["plugins"]}["core"]["essential"] is True


def test_commands_come_from_their_plugins_and_go_with_them(run_bottle):
    everything = cli_commands(run_bottle)
    assert everything == ["run", "plugins", "doctor", "ls", "stop", "gc", "resume", "rm", "prune", "logs", "ports",
                          "exec", "audit", "cp",
                          "proposals", "answer", "supervise", "usage", "egress", "image"]
    assert cli_commands(run_bottle, BOTTLE_DISABLE_PLUGINS="egress,supervise,core") == [
        "run", "plugins", "doctor", "ls", "stop", "gc", "resume", "rm", "prune", "logs", "ports", "exec", "audit", "cp",
        "image"]
    assert cli_commands(run_bottle, BOTTLE_PLUGINS="") == everything[:14]


# -- pluggy's checks: what is wrong with one plugin is that plugin's failure --------------------


def test_a_misspelt_hook_fails_that_plugin_alone(install):
    install("typo", """
        from bottle import hookimpl

        @hookimpl
        def bottle_provison_git(plan, bottle):
            pass
    """)
    plugins = load_plugins()
    assert "unknown hook 'bottle_provison_git'" in plugins.failures["typo"]
    assert "typo" not in by_name(plugins)
    assert not plugins.hook.bottle_provison_git.get_hookimpls()
    assert set(BUILT_INS) <= set(by_name(plugins)) and list(plugins.failures) == ["typo"]


def test_a_hook_of_a_plugin_that_is_not_there_may_be_implemented_as_optional(install):
    install("helper", """
        from bottle import hookimpl

        @hookimpl(optionalhook=True)
        def bottle_nobody_declares(value):
            return value
    """)
    plugins = load_plugins()
    assert plugins.failures == {}
    assert "bottle_nobody_declares" in by_name(plugins)["helper"].hooks


PUBLISHER = """
    import sys

    from bottle import hookimpl
    from bottle.hookspecs import hookspec


    @hookspec(firstresult=True)
    def bottle_test_asked(what):
        "A hook the publisher declares for others to answer."


    @hookimpl
    def bottle_addhooks(pluginmanager):
        pluginmanager.add_hookspecs(sys.modules[__name__])
"""


def test_a_published_hook_is_answered_by_another_plugin(install):
    install("publisher", PUBLISHER)
    install("answerer", """
        from bottle import hookimpl

        @hookimpl(optionalhook=True)
        def bottle_test_asked(what):
            return what.upper()
    """)
    plugins = load_plugins()
    assert plugins.failures == {}
    assert plugins.hook.bottle_test_asked(what="hello") == "HELLO"


def test_a_wrong_implementation_of_a_published_hook_fails_its_own_plugin(install):
    """Publishers register first whatever their names, so the publisher is not the one to fail."""
    install("aaa-answerer", """
        from bottle import hookimpl

        @hookimpl(optionalhook=True)
        def bottle_test_asked(what, extra):
            return what
    """)
    install("zzz-publisher", PUBLISHER)
    plugins = load_plugins()
    assert "extra" in plugins.failures["aaa-answerer"]
    assert "zzz-publisher" in by_name(plugins) and "zzz-publisher" not in plugins.failures


def test_a_plugin_registered_late_still_publishes_its_hooks():
    """bottle_addhooks is historic: it is called for a plugin that comes after the loading."""
    plugins = load_plugins()

    class Late:
        @hookimpl
        def bottle_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Specs:
        @staticmethod
        @pluggy.HookspecMarker("bottle")
        def bottle_test_late(value):
            "Declared by a plugin registered after the loading."

    plugins.manager.register(Late(), name="late")
    assert plugins.hook.bottle_test_late.has_spec()


# -- blocking and allowing ---------------------------------------------------------------------


def test_a_disabled_plugin_is_blocked_and_never_imported(install):
    install("noisy", 'raise RuntimeError("imported although disabled")\n')
    plugins = load_plugins(disabled=["noisy"])
    assert "noisy" not in plugins.failures
    assert plugins.manager.is_blocked("noisy")
    assert plugins.manager.register(SimpleNamespace(), name="noisy") is None  # in-process too


def test_the_allow_list_loads_only_what_it_names_and_the_essential_plugins():
    plugins = load_plugins(allowed=["prompt"])
    assert set(by_name(plugins)) == {"core", "prompt"}
    assert {"docker", "skills", "egress"} <= set(plugins.not_allowed)
    assert plugins.manager.is_blocked("docker")
    assert plugins.failures == {}
    assert set(by_name(load_plugins(allowed=[]))) == {"core"}


def test_a_name_the_allow_list_gives_that_nothing_has_is_reported():
    plugins = load_plugins(allowed=["prompt", "promt"])
    assert "named in BOTTLE_PLUGINS" in plugins.failures["promt"]


def test_the_essential_plugins_cannot_be_disabled():
    plugins = load_plugins(disabled=["core", "prompt"])
    assert by_name(plugins)["core"].essential
    assert "prompt" not in by_name(plugins)


def test_only_the_core_provides_an_essential_plugin(install):
    install("core", """
        from bottle import hookimpl

        @hookimpl
        def bottle_register_commands(app):
            app.command("run")(lambda: None)
    """)
    plugins = load_plugins()
    assert "core" in plugins.failures
    assert by_name(plugins)["core"].distribution == "bottle"


# -- commands: registered by plugins, a clash names both ---------------------------------------------


def command_plugin(*names: str, group: str | None = None, fail: bool = False):
    """An in-process plugin adding commands *names* (in a sub-app *group*, "" for one without a name)."""

    class Plugin:
        @hookimpl
        def bottle_register_commands(self, app):
            target = app if group is None else typer.Typer()
            for name in names:
                target.command(name)(lambda: None)
            if group is not None:
                app.add_typer(target, **({"name": group} if group else {}))
            if fail:
                raise RuntimeError("broken halfway")

    return Plugin()


def registered(*extra: tuple[str, object]):
    """The plugins, with *extra* (name, plugin) registered in-process, and their commands registered in an app."""
    plugins = load_plugins()
    for name, plugin in extra:
        plugins.manager.register(plugin, name=name)
    app = typer.Typer()
    plugins.register_commands(app)
    return plugins, app


@pytest.mark.parametrize("first, second, taken", [
    (command_plugin("hello"), command_plugin("hello"), "hello"),
    (command_plugin("hello"), command_plugin("hello", group=""), "hello"),  # a nameless group's commands join the app
    (command_plugin(group="greetings"), command_plugin("greetings"), "greetings"),
])
def test_a_command_two_plugins_register_is_an_error_naming_both(first, second, taken):
    with pytest.raises(EnvironmentProblem) as info:
        registered(("first-plugin", first), ("second-plugin", second))
    message = str(info.value)
    assert f"Command {taken!r}" in message and "'first-plugin'" in message and "'second-plugin'" in message


@pytest.mark.parametrize("plugin, taken, owner", [
    (command_plugin("run"), "run", "core"),
    (command_plugin("ls", group=""), "ls", "core"),
    (command_plugin("allow", group="egress"), "egress", "egress"),
])
def test_a_plugin_cannot_take_another_plugins_command(plugin, taken, owner):
    with pytest.raises(EnvironmentProblem, match=f"Command {taken!r} is registered twice: by plugin {owner!r} "
                                                 "and by plugin 'intruder'"):
        registered(("intruder", plugin))


def test_a_plugin_failing_to_register_commands_leaves_none_behind():
    plugins, app = registered(("half", command_plugin("half-done", fail=True)), ("fine", command_plugin("fine")))
    assert "registering commands: RuntimeError: broken halfway" in plugins.failures["half"]
    assert "half-done" not in command_names(app) and "fine" in command_names(app)


def test_each_plugin_is_listed_with_the_commands_it_registered():
    plugins, app = registered()
    info = by_name(plugins)
    assert info["core"].commands == ("run", "plugins", "doctor", "ls", "stop", "gc", "resume", "rm", "prune", "logs",
                                     "ports", "exec", "audit", "cp")
    assert info["egress"].commands == ("usage", "egress") and info["images"].commands == ("image",)
    assert info["supervise"].commands == ("proposals", "answer", "supervise")
    assert command_names(app) == [*info["core"].commands, *info["supervise"].commands, "usage", "egress", "image"]


# -- the grant hook: supervise asks, egress answers, neither imports the other ------------------------


@pytest.fixture
def allowlist(monkeypatch):
    """The live allowlist change (the integration tests make it for real), recorded."""
    calls = []
    monkeypatch.setattr(egress_control, "change_allowlist", lambda slug, rule, allow: calls.append((slug, rule, allow)))
    return calls


def test_egress_grants_an_approved_egress_proposal(plugins, allowlist):
    grant = plugins.hook.bottle_supervise_grant
    assert grant(bottle="slug-1", kind="egress", value=" pypi.org:8443 ") == "pypi.org:8443"
    assert allowlist == [("slug-1", "pypi.org:8443", True)]
    assert grant(bottle="slug-1", kind="capability", value="jq") is None
    with pytest.raises(ValueError, match="x.org/path"):
        grant(bottle="slug-1", kind="egress", value="https://x.org/path")
    assert len(allowlist) == 1


def test_egress_loads_without_supervise_and_supervise_without_egress():
    assert by_name(load_plugins(disabled=["supervise"]))["egress"]
    without_egress = load_plugins(disabled=["egress"])
    assert without_egress.failures == {}
    assert without_egress.hook.bottle_supervise_grant.get_hookimpls() == []


def test_approving_egress_with_no_plugin_to_grant_it_is_refused(home):
    queue = Queue(prepare_queue(home.state_root) / QUEUE_FILE)
    proposal_id = queue.propose("slug-1", "coder", "egress", "pypi.org", "pip")
    with pytest.raises(EnvironmentProblem) as info:
        answer(home.state_root, proposal_id, "approve", plugins=load_plugins(disabled=["egress"]))
    assert "No plugin grants egress proposals (bottle_supervise_grant)" in str(info.value)
    assert "disabled by BOTTLE_DISABLE_PLUGINS: egress" in str(info.value)
    assert queue.get(proposal_id).status == "pending"


def test_any_plugin_may_carry_out_the_approvals_of_its_kind(home):
    class Installer:
        @hookimpl(optionalhook=True)
        def bottle_supervise_grant(self, bottle, kind, value):
            return f"installed {value} in {bottle}" if kind == "capability" else None

    plugins = load_plugins()
    plugins.manager.register(Installer(), name="installer")
    queue = Queue(prepare_queue(home.state_root) / QUEUE_FILE)
    proposal_id = queue.propose("slug-1", "coder", "capability", "jq", "parse JSON")
    assert answer(home.state_root, proposal_id, "approve", plugins=plugins)["answer_value"] == "installed jq in slug-1"


# -- the agent command: a plugin says how the agent starts; the core knows none by name -------------


def plan(plugins, **kwargs):
    return build_plan("agent", settings=load_settings(), plugins=plugins, **kwargs)


def test_the_first_plugin_to_answer_decides_how_the_agent_starts(home):
    home.agent("agent", "Be brief.", env={"OTHER_AGENT_COLOUR": "green"})

    class Other:
        @hookimpl(tryfirst=True)
        def bottle_agent_command(self, ctx, headless_prompt):
            return AgentCommand(argv=("other-agent", "--run", headless_prompt),
                                env={"OTHER_AGENT_COLOUR": "blue", "OTHER_AGENT_QUIET": "1"})

    class Declining:
        @hookimpl(tryfirst=True)
        def bottle_agent_command(self, ctx, headless_prompt):
            return None

    plugins = load_plugins()
    plugins.manager.register(Other(), name="other")
    plugins.manager.register(Declining(), name="declining")  # called first, passes
    made = plan(plugins, headless_prompt="go", agent_args=("--max-turns", "2"))
    assert made.agent_argv == ("other-agent", "--run", "go", "--append-system-prompt-file",
                                made.guest.prompt_path, "--max-turns", "2")
    assert (made.env["OTHER_AGENT_COLOUR"], made.env["OTHER_AGENT_QUIET"]) == ("green", "1")  # the agent's env wins
    assert "DISABLE_TELEMETRY" not in made.env  # claude's base env came with claude's command


def test_without_a_plugin_to_start_the_agent_run_refuses(home, run_bottle):
    home.profile("default", "")  # the built-in one is the agent plugin's too
    home.agent("agent")
    with pytest.raises(EnvironmentProblem) as info:
        plan(load_plugins(disabled=["claude"]))
    assert "none answers bottle_agent_command" in str(info.value)
    assert "disabled by BOTTLE_DISABLE_PLUGINS: claude" in str(info.value)
    code, _, err = run_bottle("run", "agent", "--dry-run", env={"BOTTLE_DISABLE_PLUGINS": "claude"})
    assert code == 1 and "none answers bottle_agent_command" in err


# -- fail closed: what a plan relies on must have loaded ---------------------------------------------


def test_a_failing_backend_plugin_is_named_by_the_error_for_its_backend():
    class Broken:
        @hookimpl
        def bottle_register_backends(self, register):
            raise RuntimeError("no such library")

    plugins = load_plugins()
    plugins.manager.register(Broken(), name="broken-backend")
    assert plugins.backend("docker").name == "docker"  # the others still register
    with pytest.raises(BottleError, match="failed to load: broken-backend"):
        plugins.backend("broken")
    assert "registering backends: RuntimeError: no such library" in plugins.failures["broken-backend"]


@pytest.mark.parametrize("table, plugin, hook", [
    ('[git]\nupstream = "{repo}"\n', "git", "bottle_provision_git"),
    ("[supervise]\nenabled = true\n", "supervise", "bottle_provision_supervise"),
])
def test_a_plan_relying_on_a_provisioner_that_did_not_load_is_refused(home, tmp_path, table, plugin, hook):
    """Its profile table is nobody's then: an unknown field of the file, with what did not load."""
    subprocess.run(["git", "init", "--quiet", str(tmp_path / "up")], check=True)
    path = home.profile("default", table.format(repo=tmp_path / "up"))
    home.agent("agent")
    plan(load_plugins())  # planned with it
    with pytest.raises(UsageError) as info:
        plan(load_plugins(disabled=[plugin]))
    assert str(info.value).startswith(f"{path}: invalid bottle profile")
    assert f"field `{plugin}`: unknown key" in str(info.value)
    assert f"disabled by BOTTLE_DISABLE_PLUGINS: {plugin}" in str(info.value)


def test_repo_relies_on_the_git_provisioner(home, tmp_path):
    subprocess.run(["git", "init", "--quiet", str(tmp_path / "up")], check=True)
    home.profile("default", "")
    home.agent("agent")
    with pytest.raises(EnvironmentProblem, match="Option --repo needs a plugin implementing bottle_provision_git"):
        build_plan("agent", settings=load_settings(), plugins=load_plugins(disabled=["git"]), repo=tmp_path / "up")
