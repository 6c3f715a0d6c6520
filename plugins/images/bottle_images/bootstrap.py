"""Make the Debian base image locally with mmdebstrap and ``docker import``.

No registry is reachable to pull ``debian:*-slim`` from, but the host's apt
mirrors are, so the base is bootstrapped from them: a ``minbase`` root file
system (plus ca-certificates, which the agent build needs to trust a
TLS-intercepting proxy) written to a tarball and imported as an image. dpkg is
told to leave out documentation, manual pages and translations, as the official
slim images do; the setting stays in the image so later installs stay slim too.
mmdebstrap's merged-/usr hook makes /usr merged the way those images are,
instead of installing the usrmerge package, which would drag in all of Perl.
"""

import json
import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path

import docker
from docker.utils import parse_repository_tag
from rich.console import Console
from rich.markup import escape

from bottle.errors import EnvironmentProblem
from bottle_images.apt_sources import debian_mirrors

SLIM_DPKG_OPTIONS = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/locale/*",
]
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")
OUTPUT_TAIL = 25


def bootstrap_base(
    client: docker.DockerClient,
    *,
    tag: str,
    suite: str,
    mirrors: list[str] | None = None,
    console: Console,
) -> str:
    """Bootstrap ``suite`` from ``mirrors`` (default: the host's Debian mirrors),
    import it as ``tag`` and return the image id."""
    if shutil.which("mmdebstrap") is None:
        raise EnvironmentProblem("mmdebstrap is not installed: apt-get install mmdebstrap")
    if mirrors is None:
        mirrors = debian_mirrors(suite)
    if not mirrors:
        raise EnvironmentProblem(
            f"no Debian mirror for suite {suite!r} in the host's apt sources (/etc/apt/sources.list*); "
            "add one there or pass the mirrors explicitly"
        )
    with tempfile.TemporaryDirectory(prefix="bottle-bootstrap-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        _run_mmdebstrap(mmdebstrap_command(suite, tarball, mirrors), suite=suite, console=console)
        with console.status(f"Importing {tarball.stat().st_size // 2**20} MiB root file system as {tag}"):
            _import(client, tarball, tag)
    image_id = client.images.get(tag).id
    console.print(f"Base image {tag} ({image_id[7:19]}) bootstrapped from {suite}")
    return image_id


def mmdebstrap_command(suite: str, tarball: Path, mirrors: list[str]) -> list[str]:
    """The mmdebstrap invocation writing a slim ``minbase`` of ``suite`` to ``tarball``."""
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--include=ca-certificates",
        "--format=tar",
        *(f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS),
        *([f"--hook-dir={MERGED_USR_HOOK}"] if MERGED_USR_HOOK.is_dir() else []),
        suite,
        str(tarball),
        *mirrors,
    ]


def _run_mmdebstrap(command: list[str], *, suite: str, console: Console) -> None:
    """Run mmdebstrap, showing its ``I:`` stage lines; on failure the error
    carries the tail of its output, which is where apt's reason is."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    with console.status(f"mmdebstrap {suite}: starting") as status:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        for raw in process.stdout:
            line = raw.rstrip()
            tail.append(line)
            if line.startswith("I: "):
                console.print(f"[dim]{escape(line)}[/]", no_wrap=True, overflow="ellipsis")
                status.update(f"mmdebstrap {suite}: {escape(line[3:])}")
        returncode = process.wait()
    if returncode != 0:
        raise EnvironmentProblem(
            f"mmdebstrap failed (exit {returncode}) bootstrapping {suite}; last output:\n" + "\n".join(tail)
        )


def _import(client: docker.DockerClient, tarball: Path, tag: str) -> None:
    repository, image_tag = parse_repository_tag(tag)
    result = client.api.import_image(
        src=str(tarball), repository=repository, tag=image_tag or "latest", changes=['CMD ["bash"]']
    )
    for line in result.splitlines():
        message = json.loads(line) if line.strip() else {}
        if "error" in message:
            raise EnvironmentProblem(f"importing the bootstrapped root file system as {tag} failed: {message['error']}")
