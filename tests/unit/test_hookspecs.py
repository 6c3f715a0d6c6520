"""Every hook is documented where it is declared and exercised by some test.

"Exercised" means a plugin the tests run implements it: a built-in plugin
(plugins/) or the probe plugin that the integration tests install. A hook
nobody implements is a promise nobody checks.
"""

import importlib.util
import inspect
from pathlib import Path

import pytest

from bottle import hookspecs
from bottle.plugins import load_plugins

PROBE = Path(__file__).parents[1] / "support/probe_plugin/bottle_probe_plugin.py"
HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("bottle_") and callable(value)]


def _implemented() -> set[str]:
    """Hooks with an implementation among the installed plugins plus the probe."""
    plugins = load_plugins()
    spec = importlib.util.spec_from_file_location("bottle_probe_plugin", PROBE)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    plugins.manager.register(probe, name="probe")
    return {hook for hook in HOOKS if getattr(plugins.hook, hook).get_hookimpls()}


def test_there_are_hooks():
    assert {"bottle_register_backends", "bottle_plan_files", "bottle_provision"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.split()) >= 8, f"{hook} needs a docstring saying when it runs and what it may do"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_by_a_tested_plugin(hook):
    assert hook in _implemented(), f"no built-in or probe plugin implements {hook}: nothing tests it"


def test_provision_order_names_every_provision_hook():
    provision_hooks = {hook for hook in HOOKS if hook.startswith("bottle_provision")}
    assert set(hookspecs.PROVISION_ORDER) == provision_hooks
    assert hookspecs.PROVISION_ORDER[0] == "bottle_provision_ca"
    assert hookspecs.PROVISION_ORDER[-1] == "bottle_provision"
