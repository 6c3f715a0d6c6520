"""What the sidecar image runs on, as it finds it: ``python -m bottle_sidecar.versions``.

Prints one JSON object: the Debian suite and Python of the image, and the
installed versions of the libraries at the boundary (``PACKAGES``), read
from the installed distributions, not from the pins that asked for them.
``bottle image build`` writes them into the image's labels, for ``bottle
doctor``; the image's test reads them here, from inside, so that a label
cannot vouch for a parser the image does not have.
"""

import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("mitmproxy", "h11", "mcp", "detect-secrets")


def versions(os_release: str = "/etc/os-release") -> dict[str, str | None]:
    """The suite (``VERSION_CODENAME``), Python, and each of ``PACKAGES`` (None: not installed)."""
    with open(os_release) as file:
        fields = dict(line.rstrip("\n").split("=", 1) for line in file if "=" in line)
    found: dict[str, str | None] = {
        "debian": fields.get("VERSION_CODENAME", "").strip('"') or None,
        "python": platform.python_version(),
    }
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    json.dump(versions(), sys.stdout)
    print()
