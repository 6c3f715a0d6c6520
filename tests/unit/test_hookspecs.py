"""Every hook is documented where it is declared, implemented as declared, and exercised.

"Exercised" means a built-in plugin (an entry point of this repository's
distributions) implements it, so every run calls it; or, for the hooks no
built-in needs, a named integration test runs a real bottle with the probe
plugin, which implements them all. Those hooks are listed below with the
reason no built-in implements them: a hook nobody implements and no test runs
is a promise nobody checks. The hooks built-ins publish for each other
(``bottle_addhooks``) are held to the same rules as the core's.
"""

import ast
import importlib.util
import inspect
from pathlib import Path

import pluggy
import pytest

from bottle import hookspecs
from bottle_supervise import hookspecs as supervise_hookspecs
from bottle.plugins import load_plugins

REPO = Path(__file__).parents[2]
PROBE = REPO / "tests/support/probe_plugin/bottle_probe_plugin.py"
#: The core's hookspecs, and those the built-ins publish through bottle_addhooks.
SPEC_MODULES = (hookspecs, supervise_hookspecs)
SPECS = {name: value for module in SPEC_MODULES for name, value in vars(module).items()
         if name.startswith("bottle_") and callable(value)}
HOOKS = list(SPECS)
LIFECYCLE = "tests/integration/test_lifecycle.py::test_provisioners_run_in_core_order_after_plan_files"

#: Hooks no built-in plugin implements: why not, and the test that runs each through the probe plugin.
NOT_BUILT_IN = {
    "bottle_provision_ca": ("the ca provisioner's certificate and proxy settings are plan files and plan env, "
                            "in place before any provision hook", LIFECYCLE),
    "bottle_provision_prompt": ("the prompt is a plan file plus a claude argument", LIFECYCLE),
    "bottle_provision_skills": ("skills are plan files", LIFECYCLE),
    "bottle_provision": ("it is the third parties' provisioning hook", LIFECYCLE),
}


@pytest.fixture(scope="module")
def builtin_plugins():
    """The loaded plugin modules that come from this repository (core/ or plugins/), by entry-point name."""
    plugins = load_plugins()
    found = {name: module for name, module in plugins.manager.list_name_plugin()
             if {REPO / "core", REPO / "plugins"} & set(Path(inspect.getfile(module)).parents)}
    assert {"core", "docker", "prompt"} <= set(found), "built-ins missing (pip install -e . -e plugins/*)"
    return plugins, found


def _impls(module) -> dict[str, list]:
    """The module's hook implementations by the hook they name (``specname`` or their own name)."""
    impls: dict[str, list] = {}
    for attr in dir(module):
        function = getattr(module, attr)
        options = getattr(function, f"{hookspecs.PROJECT}_impl", None)
        if callable(function) and options is not None:
            impls.setdefault(options.get("specname") or function.__name__, []).append(function)
    return impls


def test_there_are_hooks():
    assert {"bottle_register_backends", "bottle_plan_files", "bottle_provision"} <= set(HOOKS)


def test_every_declared_hook_is_held_to_these_rules(builtin_plugins):
    """A hook some built-in publishes is in SPEC_MODULES, so it is documented, implemented and tested."""
    plugins, _ = builtin_plugins
    declared = {name for name, caller in vars(plugins.hook).items()
                if isinstance(caller, pluggy.HookCaller) and caller.has_spec()}
    assert declared == set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(SPECS[hook]) or ""
    assert len(doc.split()) >= 8, f"{hook} needs a docstring saying when it runs and what it may do"


def test_every_builtin_plugin_loads(builtin_plugins):
    """A built-in whose implementation takes an argument its hook does not declare fails
    pluggy's check at registration, and would only show as a load failure."""
    plugins, _ = builtin_plugins
    assert plugins.failures == {}


def test_builtin_implementations_match_their_hookspec(builtin_plugins):
    """Each implementation names a declared hook (pluggy calls a misspelt one never) and takes
    only arguments that hook passes, by the names the spec gives them."""
    _, modules = builtin_plugins
    wrong = []
    for name, module in modules.items():
        for hook, functions in _impls(module).items():
            if hook not in HOOKS:
                wrong.append(f"{name}: {hook} is not a hook of {', '.join(m.__name__ for m in SPEC_MODULES)}")
                continue
            declared = list(inspect.signature(SPECS[hook]).parameters)
            for function in functions:
                taken = list(inspect.signature(function).parameters)
                if not set(taken) <= set(declared):
                    wrong.append(f"{name}.{function.__name__}{tuple(taken)}: {hook} declares {tuple(declared)}")
    assert wrong == []


def test_hooks_no_builtin_implements_are_exactly_the_listed_ones(builtin_plugins):
    """Adding a built-in implementation (or dropping one) means updating NOT_BUILT_IN, with a reason."""
    _, modules = builtin_plugins
    implemented = {hook for module in modules.values() for hook in _impls(module)}
    assert set(HOOKS) - implemented == set(NOT_BUILT_IN)


def _probe_hooks() -> set[str]:
    spec = importlib.util.spec_from_file_location("bottle_probe_plugin", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(_impls(module))


@pytest.mark.parametrize("hook", sorted(NOT_BUILT_IN))
def test_a_hook_no_builtin_implements_is_run_by_a_named_test(hook):
    """The named test exists, runs a bottle with the probe plugin installed, and the probe implements the hook."""
    reason, test = NOT_BUILT_IN[hook]
    assert reason
    assert hook in _probe_hooks(), f"the probe plugin does not implement {hook}"
    path, _, function = test.partition("::")
    tree = ast.parse((REPO / path).read_text())
    defined = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert function in defined, f"{test} does not exist"
    assert "probe" in [arg.arg for arg in defined[function].args.args], f"{test} does not install the probe plugin"


def test_provision_order_names_every_provision_hook():
    provision_hooks = {hook for hook in HOOKS if hook.startswith("bottle_provision")}
    assert set(hookspecs.PROVISION_ORDER) == provision_hooks
    assert hookspecs.PROVISION_ORDER[0] == "bottle_provision_ca"
    assert hookspecs.PROVISION_ORDER[-1] == "bottle_provision"
