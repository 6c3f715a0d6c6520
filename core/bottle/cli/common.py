"""Helpers shared by the commands: loading settings and plugins, printing JSON."""

import json
import sys
from dataclasses import asdict, is_dataclass
from typing import Any


def settings_and_plugins(**flags: Any):
    from bottle.plugins import load_plugins
    from bottle.settings import load_settings

    settings = load_settings(**flags)
    plugins = load_plugins(settings.disable_plugins)
    for name, error in plugins.failures.items():
        print(f"bottle: plugin {name!r} failed to load: {error}", file=sys.stderr)
    return settings, plugins


def print_json(data: Any) -> None:
    def default(value: Any) -> Any:
        if is_dataclass(value):
            return asdict(value)
        return str(value)

    # ASCII only: values stay exact, and what an agent wrote (escape sequences,
    # bidi overrides) reaches the terminal as \u escapes, never raw.
    print(json.dumps(data, indent=2, default=default, ensure_ascii=True))
