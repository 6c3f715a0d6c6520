"""The plugin manager: entry points, disabling, broken plugins, backend registration."""

import json
import os
from types import SimpleNamespace

import pytest

from bottle import hookimpl
from bottle.errors import BottleError
from bottle.plugins import load_plugins

BUILT_INS = {
    "docker": ("bottle-backend-docker", "bottle_register_backends"),
    "prompt": ("bottle-provisioners", "bottle_plan_files"),
    "skills": ("bottle-provisioners", "bottle_plan_files"),
}


def by_name(plugins) -> dict:
    return {info.name: info for info in plugins.info()}


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_built_ins_load_from_their_own_distributions(plugins, name):
    distribution, hook = BUILT_INS[name]
    info = by_name(plugins)[name]
    assert info.distribution == distribution
    assert info.version
    assert hook in info.hooks
    assert name not in plugins.failures


def test_prompt_hooks(plugins):
    assert {"bottle_plan_files", "bottle_plan_claude_args"} <= set(by_name(plugins)["prompt"].hooks)


def test_docker_backend_registered(plugins):
    assert plugins.backend("docker").name == "docker"


def test_disabled_plugins_are_not_loaded():
    plugins = load_plugins(disabled=["skills", "docker"])
    assert {"skills", "docker"}.isdisjoint(by_name(plugins))
    assert "prompt" in by_name(plugins)
    assert plugins.disabled == ("skills", "docker")
    assert "docker" not in plugins.backends()
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
        plugins.backends()
    assert "'twin'" in str(info.value)
    assert "'first-plugin'" in str(info.value) and "'second-plugin'" in str(info.value)


def test_an_in_process_backend_sits_beside_docker():
    plugins = load_plugins()
    plugins.manager.register(backend_plugin("extra"), name="extra-plugin")
    assert {"docker", "extra"} <= set(plugins.backends())
    assert by_name(plugins)["extra-plugin"].distribution == "(registered in-process)"


# -- through the real CLI ---------------------------------------------------------


@pytest.fixture
def broken_plugin_path(tmp_path):
    """A directory for PYTHONPATH holding an installed-looking plugin that raises on import."""
    site = tmp_path / "site"
    dist_info = site / "broken_bottle_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / "broken_bottle_plugin.py").write_text('raise RuntimeError("boom: the plugin is broken")\n')
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-bottle-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[bottle]\nbroken = broken_bottle_plugin\n")
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
