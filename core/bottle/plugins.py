"""The plugin manager: every behaviour, built-in or third-party, comes from here.

Plugins are modules named by entry points in the ``bottle`` group. The
built-in backends, provisioners and commands are registered exactly like a
third party's, so blocking or replacing one is one entry-point name away:
``BOTTLE_DISABLE_PLUGINS=skills`` blocks that one, ``BOTTLE_PLUGINS=docker,prompt``
loads only those. Only the core's *essential* plugins (its own commands, as
pytest's essential plugins) load whatever the lists say.

Whatever can go wrong with one plugin is that plugin's failure, reported by
name while the others load: its import, an implementation taking arguments
its hook does not declare, and an implementation of a hook that nobody
declares (``check_pending``), most often a misspelt name that would otherwise
never be called. What a run relies on and is missing stops it instead
(:meth:`Plugins.require`): fail closed.

Registries (backends, commands, profile tables, sidecar image parts) are
asked of each implementation once per process, and a name two plugins
register is an error naming both.
"""

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from bottle import hookspecs
from bottle.errors import BottleError, EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    import typer

    from bottle.backend import Backend
    from bottle.manifests.profile import Profile
    from bottle.manifests.tables import ProfileTable
    from bottle.sidecar.service import ImagePart

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: The core's own distribution, whose entry points named in ESSENTIAL cannot be blocked.
CORE_DISTRIBUTION = hookspecs.PROJECT
#: Without these bottle could neither run a bottle nor say which plugins it has.
ESSENTIAL = ("core",)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin as ``bottle plugins`` shows it: where it comes from and what it provides."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    backends: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    sidecar_parts: tuple[str, ...] = ()
    essential: bool = False


@dataclass
class Plugins:
    """The loaded plugins, their failures, what was left out, and what each provides."""

    manager: pluggy.PluginManager
    failures: dict[str, str] = field(default_factory=dict)
    disabled: tuple[str, ...] = ()
    not_allowed: tuple[str, ...] = ()  # installed, but left out by BOTTLE_PLUGINS
    #: kind ("backend", "command") -> name -> the plugin that registered it.
    provided: dict[str, dict[str, str]] = field(default_factory=dict)
    _entry_points: dict[str, EntryPoint] = field(default_factory=dict)

    @property
    def hook(self):
        return self.manager.hook

    def info(self) -> list[PluginInfo]:
        self.backends, self.profile_tables, self.image_parts  # noqa: B018 -- registered once; `provided` knows owners
        infos = []
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:  # blocked
                continue
            ep = self._entry_points.get(name)
            if ep is not None and ep.dist is not None:
                distribution, version = ep.dist.metadata["Name"], ep.dist.version
            else:
                distribution, version = "(registered in-process)", ""
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=distribution,
                    version=version,
                    hooks=tuple(sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [])),
                    backends=self._provided_by("backend", name),
                    commands=self._provided_by("command", name),
                    tables=self._provided_by("profile table", name),
                    sidecar_parts=self._provided_by("sidecar image part", name),
                    essential=name in ESSENTIAL,
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def _provided_by(self, kind: str, plugin: str) -> tuple[str, ...]:
        return tuple(name for name, owner in self.provided.get(kind, {}).items() if owner == plugin)

    def _claim(self, kind: str, name: str, plugin: str) -> None:
        """Record that *plugin* provides the *kind* called *name*; one that another plugin took is an error naming both."""
        owners = self.provided.setdefault(kind, {})
        if name in owners:
            raise EnvironmentProblem(
                f"{kind.capitalize()} {name!r} is registered twice: by plugin {owners[name]!r} "
                f"and by plugin {plugin!r}. Disable one with BOTTLE_DISABLE_PLUGINS."
            )
        owners[name] = plugin

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """A registration hook's implementations, in the order their plugins were registered (the core's first;
        ``tryfirst``/``trylast`` aside).

        Each is called on its own, rather than through the hook, so that what
        it registers is known to be its plugin's; for a registry the order only
        decides which plugin a clash names first.
        """
        return getattr(self.hook, hook_name).get_hookimpls()

    def _call(self, impl: pluggy.HookImpl, doing: str, sink: dict | None = None, **kwargs: Any) -> bool:
        """Call one implementation with the arguments it takes (its result into ``sink["value"]``); False if it
        failed, as its plugin's failure.

        A :class:`BottleError` (a clash, say) is the user's to see and goes on up.
        """
        try:
            value = impl.function(*(kwargs[name] for name in impl.argnames))
            if sink is not None:
                sink["value"] = value
        except BottleError:
            raise
        except Exception as err:  # a broken plugin must not take the others down
            self.failures[impl.plugin_name] = f"{doing}: {type(err).__name__}: {err}"
            return False
        return True

    def _collect(self, hook_name: str, kind: str, keys: "Callable[[Any], Iterable[str]]", doing: str) -> list:
        """What each implementation of a registration hook passes to ``register(item, ...)``, in registration
        order; each of an item's *keys* is claimed for its plugin, so a key two plugins register names both."""
        found: list = []
        for impl in self._impls(hook_name):

            def register(*items: Any, _owner: str = impl.plugin_name) -> None:
                for item in items:
                    for key in keys(item):
                        self._claim(kind, key, _owner)
                    found.append(item)

            self._call(impl, doing, register=register)
        return found

    @cached_property
    def backends(self) -> dict[str, "Backend"]:
        """Every registered backend by name, asked of the plugins the first time it is needed."""
        found = self._collect("bottle_register_backends", "backend", lambda backend: [backend.name],
                              "registering backends")
        return {backend.name: backend for backend in found}

    @cached_property
    def profile_tables(self) -> tuple["ProfileTable", ...]:
        """Every registered profile table, in registration order (the core's plugins first)."""
        return tuple(self._collect("bottle_register_profile_tables", "profile table", lambda table: [table.key],
                                   "registering profile tables"))

    @cached_property
    def image_parts(self) -> dict[str, "ImagePart"]:
        """What every plugin's sidecar services need in the sidecar image, by part name."""
        found: dict[str, ImagePart] = {}
        for impl in self._impls("bottle_sidecar_image_parts"):
            result = {}
            if self._call(impl, "declaring sidecar image parts", sink=result):
                for part in result["value"] or ():
                    self._claim("sidecar image part", part.name, impl.plugin_name)
                    found[part.name] = part
        return found

    @cached_property
    def settings_extensions(self) -> tuple[type, ...]:
        """The settings models plugins registered; a key another plugin (or the core) has is an error naming both."""
        from bottle.settings import Settings

        owners = self.provided.setdefault("setting", {})
        for name in Settings.model_fields:
            owners.setdefault(name, "core")
        return tuple(self._collect("bottle_register_settings", "setting", lambda model: list(model.model_fields),
                                   "registering settings"))

    def load_profile(self, name: str, config_dir: "Path", referrer: str = "") -> "Profile":
        """Profile *name* with the tables these plugins registered, and their built-in ``default``."""
        from bottle.manifests.profile import load_profile

        try:
            return load_profile(name, config_dir, referrer, tables=self.profile_tables,
                                builtin=lambda path: self.hook.bottle_builtin_profile(path=path))
        except UsageError as err:  # a table of a plugin that did not load reads as an unknown field
            raise UsageError(f"{err}{self.not_loaded()}") from None

    def backend(self, name: str) -> "Backend":
        if name not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none"
            raise UsageError(
                f"Unknown backend {name!r} (--backend, BOTTLE_BACKEND or profile field `backend`). "
                f"Installed: {known}.{self.not_loaded()}"
            )
        return self.backends[name]

    def register_commands(self, app: "typer.Typer") -> None:
        """Let each plugin add its commands to *app*; a name another plugin registered is an error naming both.

        What one implementation added is what it left in ``app`` beyond what
        was there before it ran; one that fails leaves nothing behind.
        """
        for impl in self._impls("bottle_register_commands"):
            before = (len(app.registered_commands), len(app.registered_groups))
            names = Counter(command_names(app))
            if not self._call(impl, "registering commands", app=app):
                del app.registered_commands[before[0]:], app.registered_groups[before[1]:]
                continue
            for name in (Counter(command_names(app)) - names).elements():
                self._claim("command", name, impl.plugin_name)

    def results_by_plugin(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Each implementation's result of *hook_name* with the name of its plugin, in the order pluggy calls
        them: for a planning hook whose results must not clash, so that a clash names both plugins. Unlike
        the registries, an exception is not a plugin's failure to isolate: it stops the plan, as through
        the hook."""
        return [(impl.plugin_name, impl.function(*(kwargs[name] for name in impl.argnames)))
                for impl in reversed(self._impls(hook_name))]

    def require(self, hook_name: str, needed_by: str) -> None:
        """Stop (fail closed) unless a loaded plugin implements *hook_name*, on which *needed_by* relies."""
        if not getattr(self.hook, hook_name).get_hookimpls():
            raise EnvironmentProblem(f"{needed_by} needs a plugin implementing {hook_name}, and none is loaded."
                                     f"{self.not_loaded()}")

    def not_loaded(self) -> str:
        """What is installed but not loaded, and why: for the message about something missing."""
        why = [f"{label}: {', '.join(names)}" for label, names in (
            ("failed to load", tuple(self.failures)),
            ("disabled by BOTTLE_DISABLE_PLUGINS", self.disabled),
            ("not in BOTTLE_PLUGINS", self.not_allowed),
        ) if names]
        return f" Plugins not loaded: {'; '.join(why)} (see `bottle plugins`)." if why else ""


def _import(plugins: Plugins, found: list[EntryPoint]) -> dict[str, Any]:
    """Import each entry point's module that is not blocked, by name; an import error is that plugin's failure."""
    modules: dict[str, Any] = {}
    for ep in found:
        if plugins.manager.is_blocked(ep.name):
            continue
        taken = plugins._entry_points.get(ep.name)
        if taken is not None:
            plugins.failures[ep.name] = f"entry point name also used by {taken.value}"
            continue
        if ep.name in ESSENTIAL and (ep.dist is None or ep.dist.name != CORE_DISTRIBUTION):
            plugins.failures[ep.name] = f"{ep.value}: the name of one of the core's essential plugins"
            continue
        try:
            modules[ep.name] = ep.load()
        except Exception as err:  # a broken third-party plugin must not break bottle
            plugins.failures[ep.name] = f"{type(err).__name__}: {err}"
            continue
        plugins._entry_points[ep.name] = ep
    return modules


def _register(plugins: Plugins, name: str, module: Any) -> None:
    try:
        plugins.manager.register(module, name=name)
    except Exception as err:  # a wrong signature, or its bottle_addhooks raised
        if plugins.manager.has_plugin(name):
            plugins.manager.unregister(name=name)
        plugins.failures[name] = f"{type(err).__name__}: {err}"


def _publishes_hooks(manager: pluggy.PluginManager, module: Any) -> bool:
    """Whether *module* implements ``bottle_addhooks``.

    Such plugins register first, so that an implementation of a hook they
    publish is checked when its own plugin registers, and fails as that
    plugin's, rather than failing the publisher's registration.
    """
    for attr in dir(module):
        opts = manager.parse_hookimpl_opts(module, attr)
        if opts is not None and (opts.get("specname") or attr) == "bottle_addhooks":
            return True
    return False


def _check_pending(plugins: Plugins) -> None:
    """pluggy's check that every implementation names a declared hook, or is optional; an offender is unregistered."""
    while True:
        try:
            plugins.manager.check_pending()
            return
        except pluggy.PluginValidationError as err:
            name = plugins.manager.get_name(err.plugin)
            plugins.manager.unregister(err.plugin)
            plugins.failures[name] = (
                f"{err}: no loaded plugin declares this hook (a misspelt name? an implementation "
                "of another plugin's hook is marked @hookimpl(optionalhook=True))"
            )


def load_plugins(disabled: Iterable[str] = (), allowed: Iterable[str] | None = None) -> Plugins:
    """Load the ``bottle`` entry points, but the *disabled* ones and, when *allowed* is given, those it leaves out.

    The core's essential plugins load whatever the lists say, and register
    first (their commands come first); then the plugins that publish hooks
    (``bottle_addhooks``), then the others, each group in name order. Last,
    pluggy checks that every implementation names a declared hook.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.hook.bottle_addhooks.call_historic(kwargs={"pluginmanager": manager})
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    allowed = None if allowed is None else {*allowed, *ESSENTIAL}
    not_allowed = tuple(dict.fromkeys(ep.name for ep in found if allowed is not None and ep.name not in allowed))
    plugins = Plugins(manager=manager, disabled=tuple(disabled), not_allowed=not_allowed)
    for name in (*plugins.disabled, *not_allowed):
        if name not in ESSENTIAL:
            manager.set_blocked(name)
    modules = _import(plugins, found)
    order = sorted(modules.items(), key=lambda item: (item[0] not in ESSENTIAL, not _publishes_hooks(manager, item[1])))
    for name, module in order:
        _register(plugins, name, module)
    for name in sorted((allowed or set()) - {ep.name for ep in found}):
        plugins.failures[name] = "named in BOTTLE_PLUGINS, but no installed plugin has this name"
    _check_pending(plugins)
    return plugins


def command_names(app: "typer.Typer") -> list[str]:
    """The names *app*'s commands and groups will have, as typer gives them (a nameless group's commands join *app*)."""
    from typer.main import get_command_name, solve_typer_info_defaults

    names = [info.name or get_command_name(info.callback.__name__) for info in app.registered_commands]
    for group in app.registered_groups:
        name = solve_typer_info_defaults(group).name
        names += [name] if name else command_names(group.typer_instance)
    return names
