"""A bottle's durable disks: where its home and workdir live between runs, each held to ``disk``.

The agent's home (Claude Code's sessions, its settings) and its workdir must
outlive the container: the run ends by removing the containers and the
network, and ``bottle resume`` mounts the same files again. Docker's named
volumes outlive containers, but a plain one grows until the host's disk is
full, and this engine's storage has no quota per container. So each is an
ext4 filesystem in a sparse file of ``disk`` bytes in the bottle's state dir
(``disks/home.ext4``, ``disks/workdir.ext4``), attached to a loop device and
mounted through a named volume (``bottle-SLUG-home``) whose device is that
loop: the kernel says "No space left on device" at the bound, the file holds
only what was written, and it survives a crash, ``kill -9`` of ``bottle run``
and a restart of the engine. Loop devices need root on the engine's own
machine; without them (:func:`loops_unavailable`) the volumes are plain ones,
unbounded, and ``bottle doctor`` says so.

A loop device is the host's, not the volume's: after a reboot the number in a
volume's options may name another file. So every start attaches the file
again (or finds it attached) and re-creates the volume when its device
differs; nothing mounts a volume any other way.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bottle.errors import EnvironmentProblem

DISKS_DIR = "disks"
TOOLS = ("losetup", "mkfs.ext4", "debugfs")
#: Mount options of every disk: nothing on it is a device or gains privileges.
MOUNT_OPTIONS = "nosuid,nodev"


def loops_unavailable() -> str | None:
    """Why this machine cannot give a bottle loop-backed disks, or None when it can."""
    if os.environ.get("DOCKER_HOST", "unix://").split("://")[0] != "unix":
        return "the Docker engine is not on this machine (DOCKER_HOST), so its loop devices are not ours"
    if os.geteuid() != 0:
        return "loop devices need root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed (e2fsprogs, util-linux)"
    if not Path("/dev/loop-control").exists():
        return "this kernel has no /dev/loop-control"
    return None


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise EnvironmentProblem(f"{what} failed ({' '.join(argv[:2])} exited {result.returncode}): "
                                 f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Disk:
    """One disk file of a bottle, made on first use, owned inside by the guest user."""

    path: Path
    size: int
    uid: int

    def create(self) -> None:
        """Make the sparse file and its filesystem, once: an existing disk is the bottle's work."""
        if self.path.exists():
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        with open(partial, "wb") as out:
            out.truncate(self.size)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={self.uid}:{self.uid}", str(partial)],
             f"making the filesystem of {self.path}")
        # git clones only into an empty directory: the workdir starts with nothing, not lost+found.
        _run(["debugfs", "-w", "-R", "rmdir lost+found", str(partial)], f"preparing {self.path}")
        os.replace(partial, self.path)


def attach(path: Path) -> str:
    """The loop device holding the disk file *path*: the one it is attached to already, else a new one."""
    attached = _run(["losetup", "--associated", str(path)], f"looking up the loop device of {path}")
    for line in attached.splitlines():
        device = line.split(":", 1)[0]
        if device.startswith("/dev/loop"):
            return device
    return _run(["losetup", "--find", "--show", str(path)], f"attaching {path}").strip()


def backing_file(device: str) -> str | None:
    """The file *device* (a loop device) holds, or None when it holds none."""
    result = subprocess.run(["losetup", "--noheadings", "--output", "BACK-FILE", device],
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or None if result.returncode == 0 else None


def detach(device: str, slug: str) -> None:
    """Detach *device* if it holds one of bottle *slug*'s disks (a volume's options are only a hint: after a
    reboot the number may belong to another file)."""
    held = backing_file(device)
    if held and re.search(rf"/{re.escape(slug)}/{DISKS_DIR}/[a-z]+\.ext4( \(deleted\))?$", held):
        subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=30)
