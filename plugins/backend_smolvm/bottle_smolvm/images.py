"""The agent image for smolvm: the Docker image, exported once per image id.

bottle builds its images with Docker whatever the backend; smolvm boots a
``docker save`` archive without any registry. The archive is cached as
``$XDG_CACHE_HOME/bottle/smolvm/images/<image id>.tar``: a rebuilt image has a
new id and so a new archive, and an unchanged one is never exported twice.
smolvm reads the archive when a machine is created and again when it starts,
so the file must stay where it is; archives of images the engine no longer
has are removed when a new one is written.
"""

import os
import sys
from pathlib import Path

from bottle.engine import require_image


def archive_name(image_id: str) -> str:
    return image_id.split(":", 1)[-1] + ".tar"


def image_archive(client, ref: str, images_dir: Path) -> tuple[Path, bool]:
    """The cached ``docker save`` archive of *ref*; (path, whether it was exported now)."""
    image = require_image(client, ref, "agent")
    path = images_dir / archive_name(image.id)
    if path.is_file():
        return path, False
    images_dir.mkdir(parents=True, exist_ok=True)
    print(f"bottle: exporting {ref} for smolvm (once per image build)...", file=sys.stderr)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as out:
            for chunk in image.save(named=True):
                out.write(chunk)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    prune(client, images_dir, keep=path)
    return path, True


def prune(client, images_dir: Path, keep: Path) -> list[Path]:
    """Remove archives whose image the engine no longer has."""
    from docker.errors import ImageNotFound

    removed = []
    for archive in images_dir.glob("*.tar"):
        if archive == keep:
            continue
        try:
            client.images.get("sha256:" + archive.stem)
        except ImageNotFound:
            archive.unlink(missing_ok=True)
            removed.append(archive)
    return removed
