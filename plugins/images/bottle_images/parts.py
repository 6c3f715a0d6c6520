"""The sidecar image's parts: every loaded plugin's, unioned, and written into the image's build context.

Each plugin that runs a service in the sidecar declares what the service
needs in the image (:class:`bottle.sidecar.service.ImagePart`, hook
``bottle_sidecar_image_parts``); the core declares the kit's the same way.
The image holds the union, so this is where two parts that cannot live in
one image are told apart, with the names of what clashes: pip would fail the
build later without them.

sidecar.Dockerfile reads what :func:`write_parts` writes: ``lib/PACKAGE``
(each package as it is installed here), ``apt.txt``, ``requirements.txt``
(one pip resolution) and ``build.sh`` (the run commands, the kit's first).
"""

import importlib.util
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bottle.errors import EnvironmentProblem
from bottle.sidecar.kit import KIT_NAME

if TYPE_CHECKING:
    from bottle.sidecar.service import ImagePart

# name==version, and maybe an environment marker (``; platform_machine == "x86_64"``) for a wheel
# that serves some machines only.
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)(?:\s*;\s*\S.*)?")
_DISABLE = "Disable one of their plugins with BOTTLE_DISABLE_PLUGINS."


def loaded_parts() -> list["ImagePart"]:
    """The parts of every plugin this process loaded, unioned (see :func:`union`)."""
    from bottle.cli.common import loaded_plugins

    return union(part for parts in loaded_plugins().hook.bottle_sidecar_image_parts() for part in parts)


def union(parts: Iterable["ImagePart"]) -> list["ImagePart"]:
    """Each part once, the kit's first, then by name. A name declared twice must be declared the same."""
    by_name: dict[str, ImagePart] = {}
    for part in parts:
        known = by_name.setdefault(part.name, part)
        if known != part:
            differ = [name for name in type(part).model_fields if getattr(known, name) != getattr(part, name)]
            raise EnvironmentProblem(
                f"The sidecar image part {part.name!r} is declared twice, with different {', '.join(differ)}: "
                f"{getattr(known, differ[0])} and {getattr(part, differ[0])}. {_DISABLE}"
            )
    return sorted(by_name.values(), key=lambda part: (part.name != KIT_NAME, part.name))


def pin_of(requirement: str) -> tuple[str, str] | None:
    """(name, version) of a pin (``name==version``, maybe with a marker after ``;``), or None if it is none."""
    match = _PIN.fullmatch(requirement)
    return match.groups() if match else None


def requirements(parts: Sequence["ImagePart"]) -> list[str]:
    """Every part's pip requirements once, in part order. Each must be a pin (name==version, maybe with a marker), and two parts
    pinning one distribution must agree: the image holds one version of it."""
    pins: dict[str, tuple[str, str, str]] = {}  # normalised name -> (version, requirement, the part that asked)
    for part in parts:
        for requirement in part.pip:
            if (pin := pin_of(requirement)) is None:
                raise EnvironmentProblem(f"The sidecar image part {part.name!r} asks pip for {requirement!r}: "
                                         "its requirements must be pinned, as name==version.")
            name, version = pin
            key = re.sub(r"[-_.]+", "-", name).lower()
            pinned, first, owner = pins.setdefault(key, (version, requirement, part.name))
            if pinned != version:
                raise EnvironmentProblem(f"The sidecar image parts {owner!r} and {part.name!r} pin {name} "
                                         f"differently ({first} and {requirement}). {_DISABLE}")
    return [requirement for _, requirement, _ in pins.values()]


def write_parts(directory: Path, parts: Sequence["ImagePart"]) -> None:
    """Write *parts* (unioned) into the build context *directory*, as sidecar.Dockerfile reads them."""
    for part in parts:
        for package in part.packages:
            target = directory / "lib" / package
            if not target.exists():  # another part's too
                shutil.copytree(_installed(part, package), target,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _write_lines(directory / "requirements.txt", requirements(parts))
    _write_lines(directory / "apt.txt", dict.fromkeys(name for part in parts for name in part.apt))
    script = ["set -eux"] + [line for part in parts if part.run for line in (f"# {part.name}", *part.run)]
    _write_lines(directory / "build.sh", script)


def _installed(part: "ImagePart", package: str) -> Path:
    """Where the top-level *package* is installed here: the image gets it under the same name."""
    spec = None if "." in package else importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(f"The sidecar image part {part.name!r} names the package {package!r}, which is "
                                 "not a top-level package installed here: its plugin's distribution is incomplete.")
    return Path(next(iter(spec.submodule_search_locations)))


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
