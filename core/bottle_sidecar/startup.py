"""What every sidecar daemon checks at start, stdlib only.

Each daemon stops at start with one line saying what is wrong
(:class:`StartupError`) rather than serving in a half-configured state.
"""

import json
import os
import stat


class StartupError(Exception):
    """Something a daemon needs at start is missing or wrong; the message is one line."""


def load_credentials(path: str | None) -> dict[str, str]:
    """The credential values ({name: value}) from a file only its owner may read."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            if stat.S_IMODE(os.fstat(file.fileno()).st_mode) & 0o077:
                raise StartupError(f"the credentials file {path} must be readable by its owner only (mode 0600)")
            values = json.load(file)
    except (OSError, ValueError) as err:
        raise StartupError(f"cannot read the credentials file {path}: {err}") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise StartupError(f"the credentials file {path} must hold a JSON object of names to strings")
    return values
