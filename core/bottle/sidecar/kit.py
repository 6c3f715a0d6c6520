"""The kit's own part of the sidecar image, and the labels that say which parts an image holds.

Every sidecar image holds the kit (``bottle_sidecar``: the init every service
starts under, the audit log, the secret scanner) whatever services it has, so
the core declares the kit's part as the essential plugin's, through the same
hook (``bottle_sidecar_image_parts``) as the plugins that add services.

``bottle image build`` labels the image ``PARTS_LABEL + name`` = the part's
digest for each part it put in; :func:`image_lacks` compares those labels with
the parts a run needs, so that an image built before a part was added or
changed is refused, not run without it.

Nothing heavy at module level: the core's commands import this for ``bottle
--help``, and :class:`~bottle.sidecar.service.ImagePart` is a pydantic model.
"""

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from bottle import hookimpl

if TYPE_CHECKING:
    from bottle.sidecar.service import ImagePart

KIT_NAME = "kit"
PARTS_LABEL = "bottle.sidecar-part."  # + part name: bottle.sidecar-part.kit=sha256:...


@functools.cache
def kit_part() -> "ImagePart":
    """The kit's part: Debian's Python and tini (PID 1), ``ps`` for the init's diagnostics, the CA bundle,
    detect-secrets, whose patterns the build freezes into ``bottle_sidecar`` (see ``secrets_scan``)
    so that no service imports detect-secrets to scan, and Hyperscan, the scanner's prefilter of large
    bodies (its wheels are x86-64 only; elsewhere the scanner does without)."""
    from bottle.sidecar.service import ImagePart

    return ImagePart(
        name=KIT_NAME,
        packages=("bottle_sidecar",),
        pip=("detect-secrets==1.5.0", "hyperscan==0.9.1; platform_machine == 'x86_64'"),
        apt=("ca-certificates", "procps", "python3", "python3-venv", "tini"),
        run=("python -m bottle_sidecar.secrets_scan --freeze",),
    )


@hookimpl
def bottle_sidecar_image_parts() -> "list[ImagePart]":
    return [kit_part()]


def part_digest(part: "ImagePart") -> str:
    """``sha256:HEX`` of the part's canonical JSON (sorted keys, no spaces): equal parts, equal digests."""
    canonical = json.dumps(part.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def part_labels(parts: Iterable["ImagePart"]) -> dict[str, str]:
    """The labels an image built from *parts* carries: ``PARTS_LABEL + name`` = digest, one per part."""
    return {PARTS_LABEL + part.name: part_digest(part) for part in parts}


def image_lacks(labels: Mapping[str, str], parts: Iterable["ImagePart"]) -> list[str]:
    """The names of those *parts* that an image with *labels* does not hold as declared: its label is
    missing (built before the part existed) or carries another digest (built from another version of it)."""
    return [key.removeprefix(PARTS_LABEL) for key, digest in part_labels(parts).items() if labels.get(key) != digest]
