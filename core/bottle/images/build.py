"""Build the agent image from agent.Dockerfile with the engine's classic builder.

The build context is a temporary directory holding only the Dockerfile and the
extra CA certificates to trust during the build (see the Dockerfile for how
they are kept out of the result). The base image is never pulled: no registry
is assumed reachable, so it must already exist locally (``bottle image
bootstrap`` makes it).
"""

import re
import shutil
import subprocess
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import docker
from rich.console import Console
from rich.markup import escape

from bottle.errors import EnvironmentProblem, UsageError

DOCKERFILE = Path(__file__).with_name("agent.Dockerfile")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
OUTPUT_TAIL = 25
_STEP = re.compile(r"^Step \d+/\d+ : ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LINE_END = re.compile(r"\r\n?|\n")
_BUILDER_NOISE = ("---> ", "Removing intermediate container ")


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


def write_build_context(directory: Path, ca_certs: list[Path]) -> None:
    """Fill ``directory`` with the Dockerfile and the CAs as ``ca/NN-name.crt``
    (numbered so equal names from different folders cannot collide, and ending
    in .crt because update-ca-certificates takes nothing else)."""
    missing = [str(path) for path in ca_certs if not path.is_file()]
    if missing:
        raise UsageError(f"CA certificate not found: {', '.join(missing)}")
    shutil.copyfile(DOCKERFILE, directory / "Dockerfile")
    (directory / "ca").mkdir()
    for number, path in enumerate(ca_certs):
        shutil.copyfile(path, directory / "ca" / f"{number:02d}-{path.stem}.crt")


def build_agent_image(
    client: docker.DockerClient,
    *,
    tag: str,
    base: str,
    ca_certs: list[Path],
    keep_ca: bool,
    claude_code_version: str,
    npm_registry: str | None,
    console: Console,
) -> str:
    """Build the agent image as ``tag`` on the local image ``base``; return its id."""
    with tempfile.TemporaryDirectory(prefix="bottle-build-") as context:
        write_build_context(Path(context), ca_certs)
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            raise EnvironmentProblem(
                f"base image {base} is not present locally; make it with `bottle image bootstrap`"
            ) from None
        stream = client.api.build(
            path=context,
            tag=tag,
            buildargs={
                "BASE": base,
                "CLAUDE_CODE_VERSION": claude_code_version,
                "NPM_REGISTRY": npm_registry or "",
                "KEEP_CA": "1" if keep_ca else "0",
            },
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        _follow(stream, tag=tag, console=console)
    image_id = client.images.get(tag).id
    console.print(f"Built {tag} ({image_id[7:19]}) with Claude Code {claude_code_version}")
    return image_id


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
