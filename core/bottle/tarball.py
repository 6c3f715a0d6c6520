"""Pack plan files into one tar stream, so a backend copies them in one call.

Ownership is in the tar headers: files and the directories created for them
below the guest user's home belong to the guest user, except files marked
``root_owned``; anything else the backend's extraction creates belongs to root.
"""

import io
import posixpath
import tarfile
import time
from pathlib import Path
from typing import Sequence

from bottle.plan import PlanFile


def _owned_dirs(guest_path: str, owned_below: str) -> list[str]:
    """Ancestors of *guest_path* strictly below *owned_below*, outermost first."""
    dirs = []
    parent = posixpath.dirname(guest_path)
    while parent.startswith(owned_below + "/"):
        dirs.append(parent)
        parent = posixpath.dirname(parent)
    return list(reversed(dirs))


def pack(files: Sequence[PlanFile], *, uid: int, gid: int, owned_below: str) -> bytes:
    buffer = io.BytesIO()
    added: set[str] = set()

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    def root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
        return info

    # Links are followed: a symlink would point at a host path in the guest.
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for plan_file in files:
            for directory in _owned_dirs(plan_file.guest_path, owned_below):
                if directory not in added:
                    info = owned(tarfile.TarInfo(directory.lstrip("/")))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    added.add(directory)
            owner = root if plan_file.root_owned else owned
            if plan_file.content is not None:
                data = plan_file.content.encode()
                info = owner(tarfile.TarInfo(plan_file.guest_path.lstrip("/")))
                info.size, info.mode, info.mtime = len(data), 0o600, time.time()
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(Path(plan_file.host_path), arcname=plan_file.guest_path.lstrip("/"), recursive=True, filter=owner)
            added.add(plan_file.guest_path)
    return buffer.getvalue()
