"""``bottle image build / bootstrap``: make the images locally, registry or not."""

from pathlib import Path
from typing import List, Literal, Optional

import typer

app = typer.Typer(help="Build the images bottle runs.", no_args_is_help=True, rich_markup_mode=None)


@app.command("bootstrap")
def bootstrap(
    tag: Optional[str] = typer.Option(None, "--tag", help="Tag of the base image (default: the `image_base` setting)."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Debian suite (default: the `debian_suite` setting)."),
    mirror: Optional[List[str]] = typer.Option(None, "--mirror", help="apt source line(s); default: the host's Debian sources."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the image exists."),
) -> None:
    """Build the base image with mmdebstrap from the host's Debian mirror and `docker import` it.

    For hosts that cannot reach a container registry.
    """
    from rich.console import Console

    from bottle.engine import docker_client
    from bottle_images.bootstrap import bootstrap_base
    from bottle_images.build import image_status
    from bottle.cli.common import settings_and_plugins

    settings, _ = settings_and_plugins(image_base=tag, debian_suite=suite)
    client = docker_client()
    console = Console(stderr=True)
    if not force and image_status(client, settings.image_base) is not None:
        console.print(f"{settings.image_base} is already present (use --force to rebuild)")
        return
    image_id = bootstrap_base(
        client, tag=settings.image_base, suite=settings.debian_suite, mirrors=mirror or None, console=console
    )
    console.print(f"built {settings.image_base} ({image_id[:19]})")


@app.command("build")
def build(
    tag: Optional[str] = typer.Option(None, "--tag", help="Tag of the agent image (default: the `image` setting)."),
    sidecar_tag: Optional[str] = typer.Option(None, "--sidecar-tag", help="Tag of the sidecar image (default: the `sidecar_image` setting)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base image (default: the `image_base` setting)."),
    ca_cert: Optional[List[Path]] = typer.Option(None, "--ca-cert", help="Extra CA certificate trusted during the build (repeatable; default: the host's /usr/local/share/ca-certificates/*.crt)."),
    keep_ca: Optional[bool] = typer.Option(None, "--keep-ca/--no-keep-ca", help="Leave the build CAs in the final images."),
    only: Optional[Literal["agent", "sidecar"]] = typer.Option(None, "--only", help="Build just this image."),
) -> None:
    """Build the images: the agent's (base + git, Node.js, Claude Code and a
    non-root user) and the sidecar's (Python, mitmproxy, the MCP SDK,
    detect-secrets, git and bottle's sidecar code); each line says what the
    sidecar image holds, as its labels record it."""
    from rich.console import Console

    from bottle.engine import docker_client
    from bottle_images.build import (
        build_image, default_build_ca_certs, describe_versions, host_npm_registry, host_pip_index, image_status,
    )
    from bottle.cli.common import settings_and_plugins

    settings, _ = settings_and_plugins(
        image=tag, sidecar_image=sidecar_tag, image_base=base, build_ca_certs=ca_cert or None, build_keep_ca=keep_ca
    )
    console = Console(stderr=True)
    ca_certs = settings.build_ca_certs if settings.build_ca_certs is not None else default_build_ca_certs()
    images = {
        "agent": (
            settings.image,
            {"CLAUDE_CODE_VERSION": settings.claude_code_version, "NPM_REGISTRY": host_npm_registry() or ""},
        ),
        "sidecar": (settings.sidecar_image, {"PIP_INDEX": host_pip_index() or ""}),
    }
    client = docker_client(timeout=1800)
    for kind in [only] if only else list(images):
        image_tag, build_args = images[kind]
        image_id = build_image(
            client,
            kind=kind,
            tag=image_tag,
            base=settings.image_base,
            ca_certs=list(ca_certs),
            keep_ca=settings.build_keep_ca,
            build_args=build_args,
            console=console,
        )
        versions = describe_versions(image_status(client, image_id).labels)
        console.print(f"built {image_tag} ({image_id[:19]})" + (f": {versions}" if versions else ""))
