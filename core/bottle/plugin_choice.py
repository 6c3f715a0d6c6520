"""Which plugins to load: the ``disable_plugins`` and ``plugins`` settings, read without pydantic.

Every command, ``bottle --help`` too, loads the plugins first (they add
commands), and importing pydantic alone takes half of the 0.2 s that
``--help`` may. These two settings have no flag, so each is its ``BOTTLE_*``
variable, else the config file's key, else unset: the order in which
:class:`bottle.settings.Settings` reads them, which documents and validates
them (tests/unit/test_settings.py holds the two readings together).
"""

import os
import tomllib
from typing import Any

from bottle import paths
from bottle.errors import UsageError


def split_commas(value: Any) -> Any:
    """``"a, b,,"`` as ``["a", "b"]``; anything but a string as it is."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


def plugin_choice() -> tuple[list[str], list[str] | None]:
    """The plugins not to load, and the only ones to load (None: all)."""
    config: dict[str, Any] | None = None
    chosen = []
    for key in ("disable_plugins", "plugins"):
        value = os.environ.get(f"BOTTLE_{key.upper()}")
        if value is None:
            config = _config_file() if config is None else config
            value = config.get(key)
        value = split_commas(value)
        if value is not None and not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
            raise UsageError(f"Invalid settings ({paths.config_file()}): field `{key}`: expected a list of plugin names.")
        chosen.append(value)
    disabled, allowed = chosen
    return disabled or [], allowed


def _config_file() -> dict[str, Any]:
    try:
        with open(paths.config_file(), "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # unreadable or not TOML: as load_settings says it
        raise UsageError(f"Cannot read {paths.config_file()}: {err}") from None
