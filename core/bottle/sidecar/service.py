"""What plugins declare to run in a bottle's sidecar: values only (``bottle.sidecar.runtime`` applies them).

A plugin that guards a way out of the bottle (a proxy, a git remote, a channel
to the operator) runs it as a *service* of the sidecar: a daemon in the sidecar
image, started with the others by the kit's init (``bottle_sidecar.init``),
reachable by the guest at ``http://{plan.sidecar.hostname}:{port}``. It
declares

- the service itself (:class:`SidecarService`, hook ``bottle_sidecar_services``)
  at plan time, so that ``bottle run --dry-run`` shows it;
- what the service needs in the sidecar image (:class:`ImagePart`, hook
  ``bottle_sidecar_image_parts``), which ``bottle image build`` unions;
- at launch, before the sidecar starts, the material it needs
  (:class:`SidecarSetup`, hook ``bottle_sidecar_prepare``): secrets, read on
  the host then and handed to the sidecar alone on its stdin, into a tmpfs;
  files in the bottle's state dir, which the sidecar sees bind-mounted and
  which outlive the bottle; other mounts.

Paths inside the sidecar: :data:`RUN_DIR` is the tmpfs (secrets and files made
at launch), :data:`STATE_MOUNT` the bottle's state, :data:`AUDIT` the audit log
every service writes, :data:`CREDENTIALS` the JSON object of every secret by name.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bottle.errors import UsageError

RUN_DIR = "/run/bottle"
STATE_MOUNT = "/bottle/state"  # created by the mount, outside the image user's 0700 home
AUDIT_FILE = "audit.sqlite"
AUDIT = f"{STATE_MOUNT}/{AUDIT_FILE}"
CREDENTIALS = f"{RUN_DIR}/credentials.json"
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SidecarService(_Value):
    """One daemon of the sidecar. Its output reaches the host as ``NAME: LINE``; once it prints a line starting
    with ``ready``, it counts as listening. Should it exit, the whole sidecar stops, and with it the bottle:
    a bottle does not go on without one of its guards."""

    name: str = Field(pattern=NAME_PATTERN, description="unique among the bottle's services")
    argv: tuple[str, ...] = Field(min_length=1, description="the command in the sidecar image")
    ready: str = Field(min_length=1, description="the prefix of the line it prints once it serves")
    port: int | None = Field(None, ge=1, le=65535, description="where the guest reaches it; None: not at all")
    part: str | None = Field(None, description="the image part it needs (ImagePart.name); None: the kit's alone")


class ImagePart(_Value):
    """What services need in the sidecar image. ``bottle image build`` installs every part's ``apt`` packages,
    resolves every part's ``pip`` requirements in one install (pins that cannot live together fail the build),
    copies each of ``packages`` (installed top-level packages) under the same name, then runs ``run``. The image
    is labelled with each part's digest; ``bottle run`` refuses an image that lacks a planned service's part."""

    name: str = Field(pattern=NAME_PATTERN)
    packages: tuple[str, ...] = Field((), description="top-level packages copied in, importable on the host")
    pip: tuple[str, ...] = Field((), description="requirements, pinned (name==version)")
    apt: tuple[str, ...] = Field((), description="Debian packages")
    run: tuple[str, ...] = Field((), description="shell commands run last, as root, with the packages in place")


class SecretRef(_Value):
    """Names a secret and where the host holds it; never holds the value."""

    name: str = Field(description="its key in the sidecar's credentials file")
    env: str | None = Field(None, description="the host environment variable holding it")
    file: Path | None = Field(None, description="the host file holding it")
    what: str = Field(description="what it is and who asked for it, starting the message when it is missing: "
                      "\"Field `git.credential.env`: the git credential\"")


@dataclass
class SidecarSetup:
    """What the plugins' ``bottle_sidecar_prepare`` put in place for the sidecar; the runtime consumes it.

    Secrets are read when declared, so that a missing one stops the launch
    before anything starts, with a message naming where it was asked for.
    """

    state_dir: Path  #: the host directory the sidecar sees at STATE_MOUNT (made before the hook)
    parts: tuple[ImagePart, ...] = ()  #: what the image must hold for the planned services, the kit's first
    secrets: dict[str, str] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)  #: tmpfs files, as the init's config lists them
    binds: dict[str, dict] = field(default_factory=dict)
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def secret(self, ref: SecretRef) -> None:
        """Read *ref*'s value on the host now; the sidecar finds it under ``ref.name`` in CREDENTIALS."""
        if ref.env is not None:
            value = os.environ.get(ref.env)
            if not value:
                raise UsageError(f"{ref.what} is read from the host environment variable {ref.env}, which is not set.")
        elif ref.file is not None:
            try:
                value = ref.file.read_text()
            except OSError as err:
                raise UsageError(f"{ref.what} is read from {ref.file}, which cannot be read: {err}") from None
        else:
            raise UsageError(f"{ref.what} names neither a variable nor a file to read it from.")
        self.secrets[ref.name] = value

    def tmpfs_file(self, path: str, content: str, mode: int = 0o600) -> None:
        """A file the sidecar's init writes into its tmpfs (*path* under RUN_DIR) before any service starts."""
        if not path.startswith(f"{RUN_DIR}/"):
            raise ValueError(f"a sidecar tmpfs file lives under {RUN_DIR}/, not at {path}")
        self.files.append({"path": path, "content": content, "mode": mode})

    def state_file(self, relpath: str, content: str) -> Path:
        """A file of the bottle's state (the sidecar's ``STATE_MOUNT/relpath``); it outlives the bottle."""
        path = self.state_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def mount(self, host: Path, guest: str, mode: Literal["rw", "ro"] = "rw") -> None:
        """Bind-mount *host* into the sidecar at *guest*."""
        self.binds[str(host)] = {"bind": guest, "mode": mode}

    def callback(self, stop: Callable[[], None]) -> None:
        """Call *stop* at teardown (after the sidecar is gone): for a helper the host runs, such as a relay."""
        self.callbacks.append(stop)
