"""What the sidecar image runs on, as it finds it: ``python -m bottle_sidecar.versions [REQUIREMENTS]``.

Prints one JSON object: the Debian suite and Python of the image, and the
installed version of every distribution its requirements file names (the
union of the image parts' pins, which ``bottle image build`` writes to
:data:`REQUIREMENTS`), read from the installed distributions, not from the
pins that asked for them. So the kit names no service's library: what is
reported is what the parts asked for. ``bottle image build`` writes the result
into the image's labels, for ``bottle doctor``; the image's test reads it
here, from inside, so that a label cannot vouch for a parser the image does
not have.
"""

import json
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version

REQUIREMENTS = "/opt/bottle/parts/requirements.txt"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def requirement_names(text: str) -> list[str]:
    """The distributions a requirements file names, in its order; blank lines, comments and options name none."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [match.group() for match in map(_NAME.match, lines) if match]


def versions(os_release: str = "/etc/os-release", requirements: str = REQUIREMENTS) -> dict[str, str | None]:
    """The suite (``VERSION_CODENAME``), Python, and each distribution *requirements* names (None: not installed)."""
    with open(os_release) as file:
        fields = dict(line.rstrip("\n").split("=", 1) for line in file if "=" in line)
    with open(requirements) as file:
        names = requirement_names(file.read())
    found: dict[str, str | None] = {
        "debian": fields.get("VERSION_CODENAME", "").strip('"') or None,
        "python": platform.python_version(),
    }
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    json.dump(versions(requirements=sys.argv[1] if len(sys.argv) > 1 else REQUIREMENTS), sys.stdout)
    print()
