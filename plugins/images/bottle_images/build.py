"""Build bottle's images (agent, sidecar) from KIND.Dockerfile with the engine's classic builder.

Both kinds go through one path. The build context is a temporary directory
holding only the Dockerfile, the extra CA certificates to trust during the build
(see the Dockerfiles for how they are kept out of the result) and, for the
sidecar, the parts every loaded plugin declares (:mod:`bottle_images.parts`),
whose digests label the image. The base image is never pulled: no registry
is assumed reachable, so it must already exist locally (``bottle image
bootstrap`` makes it).
"""

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import docker
from rich.console import Console
from rich.markup import escape

from bottle.engine import FORMAT_LABEL, IMAGE_FORMATS, format_problem  # noqa: F401 -- the formats the core runs
from bottle.errors import EnvironmentProblem, UsageError
from bottle.sidecar.kit import part_labels
from bottle_images.parts import loaded_parts, write_parts

if TYPE_CHECKING:
    from bottle.sidecar.service import ImagePart

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
OUTPUT_TAIL = 25
_STEP = re.compile(r"^Step \d+/\d+ : ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LINE_END = re.compile(r"\r\n?|\n")
_BUILDER_NOISE = ("---> ", "Removing intermediate container ")


ImageKind = Literal["agent", "sidecar"]


#: What each kind's image runs on, printed as JSON by a command in it, is
#: written into its labels once it is built (``bottle image build`` and
#: ``bottle doctor`` show them): the installed versions, not the pins.
DESCRIBE: dict[ImageKind, list[str]] = {"sidecar": ["python", "-m", "bottle_sidecar.versions"]}
VERSION_LABEL = "bottle.version."  # + name: bottle.version.mitmproxy=12.3.1


def dockerfile(kind: ImageKind) -> Path:
    """The kind's Dockerfile, installed next to this module."""
    return Path(__file__).with_name(f"{kind}.Dockerfile")


@dataclass(frozen=True)
class ImageStatus:
    """What ``bottle doctor`` reports about a local image."""

    id: str
    created: str
    size: int
    labels: dict[str, str]


def default_build_ca_certs(directory: Path = HOST_CA_DIR) -> list[Path]:
    """The host's locally added CAs (where update-ca-certificates takes them
    from): behind a TLS-intercepting proxy the build needs them to reach apt and npm."""
    return sorted(directory.glob("**/*.crt"))


def host_npm_registry() -> str | None:
    """The registry the host's npm uses, so the image installs from the same
    place (a mirror, say); None when npm is not installed or has none."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    result = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True)
    registry = result.stdout.strip()
    return registry if result.returncode == 0 and registry not in ("", "undefined") else None


def host_pip_index() -> str | None:
    """The index the host's pip uses (a mirror, say), so the image installs from
    the same place; None when it uses pip's default."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    return pip_index_from_config(result.stdout) if result.returncode == 0 else None


def pip_index_from_config(config_list: str) -> str | None:
    """The index-url in ``pip config list`` output that pip would use: the last
    one, as pip lists its files in increasing precedence with the environment
    last. A file: index is skipped, being out of the build's reach."""
    urls = [
        value.strip("'\"")
        for key, _, value in (line.partition("=") for line in config_list.splitlines())
        if key.endswith(".index-url")
    ]
    return urls[-1] if urls and urls[-1].startswith(("http://", "https://")) else None


def write_build_context(
    directory: Path, kind: ImageKind, ca_certs: list[Path], parts: Sequence["ImagePart"] = ()
) -> None:
    """Fill ``directory`` with the kind's Dockerfile, the CAs (see :func:`write_ca_certs`) and the
    image's parts, unioned (the sidecar's; see :func:`bottle_images.parts.write_parts`)."""
    write_ca_certs(directory, ca_certs)
    shutil.copyfile(dockerfile(kind), directory / "Dockerfile")
    if parts:
        write_parts(directory, parts)


def write_ca_certs(directory: Path, ca_certs: list[Path]) -> None:
    """The CAs a build trusts, as ``DIRECTORY/ca/NN-name.crt`` (numbered so equal names
    from different folders cannot collide, and ending in .crt because
    update-ca-certificates takes nothing else)."""
    missing = [str(path) for path in ca_certs if not path.is_file()]
    if missing:
        raise UsageError(f"CA certificate not found: {', '.join(missing)}")
    (directory / "ca").mkdir()
    for number, path in enumerate(ca_certs):
        shutil.copyfile(path, directory / "ca" / f"{number:02d}-{path.stem}.crt")


def build_context(
    client: docker.DockerClient, context: Path, *, tag: str, build_args: Mapping[str, str], console: Console
) -> str:
    """Build the Dockerfile in *context* as *tag* with the classic builder, never
    pulling (its base must be local); return the image id."""
    stream = client.api.build(
        path=str(context), tag=tag, buildargs=dict(build_args), pull=False, rm=True, forcerm=True, decode=True
    )
    _follow(stream, tag=tag, console=console)
    return client.images.get(tag).id


def build_image(
    client: docker.DockerClient,
    *,
    kind: ImageKind,
    tag: str,
    base: str,
    ca_certs: list[Path],
    keep_ca: bool,
    build_args: Mapping[str, str],
    console: Console,
) -> str:
    """Build the ``kind`` image as ``tag`` on the local image ``base`` with the
    Dockerfile's other ARGs from ``build_args``, the sidecar's of the loaded
    plugins' parts and labelled with their digests; return its id."""
    parts = loaded_parts() if kind == "sidecar" else []
    with tempfile.TemporaryDirectory(prefix="bottle-build-") as context:
        write_build_context(Path(context), kind, ca_certs, parts)
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            raise EnvironmentProblem(
                f"base image {base} is not present locally; make it with `bottle image bootstrap`"
            ) from None
        build_context(client, Path(context), tag=tag, console=console,
                      build_args={**build_args, "BASE": base, "KEEP_CA": "1" if keep_ca else "0"})
    if kind in DESCRIBE:
        labels = {VERSION_LABEL + name: value for name, value in _describe(client, tag, DESCRIBE[kind]).items()}
        _add_labels(client, tag, {**labels, **part_labels(parts), FORMAT_LABEL: str(IMAGE_FORMATS[kind])},
                    console=console)
    return client.images.get(tag).id


def _describe(client: docker.DockerClient, tag: str, command: list[str]) -> dict[str, str]:
    """What the image says it runs on: *command*'s JSON, run in a container of it with no network."""
    try:
        output = client.containers.run(tag, entrypoint=command, remove=True, network_disabled=True)
        found = json.loads(output)
    except (docker.errors.ContainerError, ValueError) as err:
        raise EnvironmentProblem(f"the image {tag} cannot say what it runs on ({' '.join(command)}): {err}") from None
    missing = sorted(name for name, value in found.items() if value is None)
    if missing:
        raise EnvironmentProblem(f"the image {tag} lacks {', '.join(missing)}: its build installed less than it should")
    return found


def _add_labels(client: docker.DockerClient, tag: str, labels: Mapping[str, str], console: Console) -> None:
    """Re-tag *tag* as itself plus *labels*: a build of ``FROM`` and ``LABEL``, no layer added."""
    pairs = " ".join(f"{json.dumps(key)}={json.dumps(value)}" for key, value in sorted(labels.items()))
    dockerfile = f"FROM {client.images.get(tag).id}\nLABEL {pairs}\n"
    stream = client.api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True, decode=True)
    _follow(stream, tag=tag, console=console)


def image_versions(labels: Mapping[str, str]) -> dict[str, str]:
    """The versions an image's labels record (see :data:`DESCRIBE`), by name."""
    return {key.removeprefix(VERSION_LABEL): value for key, value in labels.items() if key.startswith(VERSION_LABEL)}


def describe_versions(labels: Mapping[str, str]) -> str:
    """One line of an image's recorded versions: ``Debian trixie, Python 3.13.5, detect-secrets 1.5.0, ...``:
    the suite and Python first, then the libraries by name (what the parts pin: labels keep no order)."""
    found = image_versions(labels)
    named = {"debian": "Debian", "python": "Python"}
    order = [*named, *sorted(found.keys() - named.keys())]
    return ", ".join(f"{named.get(name, name)} {found[name]}" for name in order if name in found)


def _follow(stream, *, tag: str, console: Console) -> None:
    """Show the current step and its last output line; on failure raise with
    the step and the tail of its output, where the actual reason is.

    The builder sends output in arbitrary fragments, stderr wrapped in colour
    codes, so text is buffered into whole lines and the codes are dropped.
    """
    step = "starting"
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    pending = ""
    with console.status(f"Building {tag}") as status:
        for chunk in stream:
            if "error" in chunk:
                error = " ".join(chunk["error"].split())
                raise EnvironmentProblem(
                    f"building {tag} failed at {step}: {error}\n" + "\n".join([*tail, pending.strip()]).strip()
                )
            *lines, pending = _LINE_END.split(pending + _ANSI.sub("", chunk.get("stream", "")))
            for line in (line.strip() for line in lines):
                if not line or line.startswith(_BUILDER_NOISE):
                    continue
                if _STEP.match(line):
                    step = line.split(" : ", 1)[0]
                    tail.clear()
                    console.print(f"[dim]{escape(' '.join(line.split()))}[/]", no_wrap=True, overflow="ellipsis")
                else:
                    tail.append(line)
                status.update(f"Building {tag}: {step}\n[dim]{escape(line[:150])}[/]")


def image_status(client: docker.DockerClient, tag: str) -> ImageStatus | None:
    """The local image ``tag``, or None when it is not there."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return ImageStatus(
        id=image.id, created=image.attrs["Created"], size=image.attrs["Size"], labels=image.labels
    )
