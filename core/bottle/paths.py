"""Where bottle reads configuration and keeps state, following the XDG base dirs.

Bottle profiles widen what an agent can reach, so they are only ever read from
the user's config dir, never from the repository under work.
"""

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/bottle``: config.toml, agents/, bottles/, skills/."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "bottle"


def state_root() -> Path:
    """``$XDG_STATE_HOME/bottle``: one directory per bottle (plan, prompt, logs)."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "bottle"


def config_file() -> Path:
    return config_dir() / "config.toml"


def project_dir() -> Path:
    """The repository under work: agents and skills may come from its ``.bottle/``."""
    return Path.cwd()
