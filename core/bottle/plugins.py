"""The plugin manager: every behaviour, built-in or third-party, comes from here.

Plugins are modules named by entry points in the ``bottle`` group. The
built-in backends and provisioners are registered exactly like a third
party's, so blocking or replacing one is one entry-point name away
(``BOTTLE_DISABLE_PLUGINS=skills``). A plugin that fails to import is
reported by name with its error; the others still load.
"""

from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from bottle import hookspecs
from bottle.backend import Backend
from bottle.errors import EnvironmentProblem, UsageError

ENTRY_POINT_GROUP = "bottle"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


@dataclass
class Plugins:
    """The loaded plugins, their failures, and the backends they registered."""

    manager: pluggy.PluginManager
    failures: dict[str, str] = field(default_factory=dict)
    disabled: tuple[str, ...] = ()
    _entry_points: dict[str, EntryPoint] = field(default_factory=dict)

    @property
    def hook(self):
        return self.manager.hook

    def info(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.manager.list_name_plugin():
            ep = self._entry_points.get(name)
            dist = ep.dist if ep is not None else None
            hooks = tuple(sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or []))
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.metadata["Name"] if dist else "(registered in-process)",
                    version=dist.version if dist else "",
                    hooks=hooks,
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def backends(self) -> dict[str, Backend]:
        found: dict[str, Backend] = {}
        owners: dict[str, str] = {}

        for plugin_name, plugin in self.manager.list_name_plugin():
            impl = getattr(plugin, "bottle_register_backends", None)
            if impl is None:
                continue

            def register(backend: Backend, _owner: str = plugin_name) -> None:
                if backend.name in found:
                    raise EnvironmentProblem(
                        f"Backend {backend.name!r} is registered twice: by plugin {owners[backend.name]!r} "
                        f"and by plugin {_owner!r}. Disable one with BOTTLE_DISABLE_PLUGINS."
                    )
                found[backend.name] = backend
                owners[backend.name] = _owner

            try:
                impl(register=register)
            except EnvironmentProblem:
                raise
            except Exception as err:  # a broken backend plugin must not take the others down
                self.failures[plugin_name] = f"registering backends: {type(err).__name__}: {err}"
        return found

    def backend(self, name: str) -> Backend:
        backends = self.backends()
        if name not in backends:
            known = ", ".join(sorted(backends)) or "none"
            failed = f" Plugins that failed to load: {', '.join(self.failures)}." if self.failures else ""
            raise UsageError(f"Unknown backend {name!r} (--backend, BOTTLE_BACKEND or profile field `backend`). Installed: {known}.{failed}")
        return backends[name]


def load_plugins(disabled: list[str] | tuple[str, ...] = ()) -> Plugins:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager=manager, disabled=tuple(disabled))
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disabled:
            continue
        if ep.name in plugins._entry_points:
            plugins.failures[ep.name] = f"entry point name also used by {plugins._entry_points[ep.name].value}"
            continue
        try:
            module = ep.load()
            manager.register(module, name=ep.name)
        except Exception as err:  # a broken third-party plugin must not break bottle
            plugins.failures[ep.name] = f"{type(err).__name__}: {err}"
            continue
        plugins._entry_points[ep.name] = ep
    return plugins
