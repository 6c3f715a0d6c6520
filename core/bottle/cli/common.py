"""Helpers shared by the commands: settings and plugins, printing JSON."""

import functools
import json
from dataclasses import asdict, is_dataclass
from typing import Any

import typer

SLUG = typer.Argument(..., metavar="SLUG", help="The bottle's slug (see `bottle ls`).")


@functools.cache
def loaded_plugins():
    """This process's plugins, loaded once: ``main()`` registers their commands, which use the same."""
    from bottle.plugin_choice import plugin_choice
    from bottle.plugins import load_plugins

    return load_plugins(*plugin_choice())


def settings_and_plugins(**flags: Any):
    """The settings, with the *flags* the user gave on top, and this process's plugins."""
    from bottle.settings import load_settings

    plugins = loaded_plugins()
    return load_settings(extensions=plugins.settings_extensions, **flags), plugins


def print_json(data: Any) -> None:
    def default(value: Any) -> Any:
        if is_dataclass(value):
            return asdict(value)
        return str(value)

    # ASCII only: values stay exact, and what an agent wrote (escape sequences,
    # bidi overrides) reaches the terminal as \u escapes, never raw.
    print(json.dumps(data, indent=2, default=default, ensure_ascii=True))
