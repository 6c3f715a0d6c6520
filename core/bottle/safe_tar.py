"""Tar streams across the bottle's wall: unpacking what came out of a guest, packing what goes in.

What comes out of a bottle was written by the agent, and is hostile.
:func:`unpack_beside` unpacks it into a fresh temporary directory beside the
destination (the caller moves the result into place, and the directory goes
whatever happens), refusing the whole stream, with a message naming the
member, for any of:

* an absolute member name, or one with a ``..`` component;
* a member beneath a symbolic link or a file of the archive, or the same name twice
  (nothing is ever written through a link);
* a symbolic link whose target, followed through the archive's other links,
  leaves the top-level item it is in (what lands on the host), or is absolute;
  a top-level item that is a link; a hard link to anything but a regular file
  before it in the archive;
* a device node, a FIFO, or any other member that is not a file, a directory
  or a link;
* more than ``max_members`` members, or more than ``max_bytes`` of file
  contents (and a stream much longer than that).

setuid, setgid and sticky bits, and group or other write bits, are dropped;
owners are never set. Where Python has :func:`tarfile.data_filter` (3.11.4+)
every member also passes it, on top of these checks (its own realpath checks
follow links that exist at the time, so it cannot judge a link whose target is
made by a later member: the chain resolution here does).

:func:`pack_path` packs a host path for a guest without following any
symbolic link in it (links travel as links) and :func:`owned_by` re-owns such
a stream for an engine that extracts as root.
"""

import contextlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from bottle.display import terminal_safe
from bottle.errors import EnvironmentProblem, UsageError

DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MAX_MEMBERS = 200_000
#: Links followed while resolving one symbolic link before it counts as a loop.
MAX_HOPS = 40
CHUNK = 1024 * 1024


class UnsafeArchive(UsageError):
    """A tar stream refused as a whole: nothing of it is left on disk (exit 2)."""


@dataclass
class Unpacked:
    """What :func:`unpack_beside` wrote, under :attr:`root`."""

    root: Path
    files: int = 0
    directories: int = 0
    links: int = 0
    bytes: int = 0

    def top(self) -> list[Path]:
        return sorted(self.root.iterdir())


def _shown(name: str) -> str:
    return terminal_safe(name)


class _Chunks:
    """A file-like reader over an iterable of byte chunks, refusing more than *limit* bytes."""

    def __init__(self, chunks: Iterable[bytes] | bytes, limit: int):
        self._chunks = iter([chunks]) if isinstance(chunks, (bytes, bytearray)) else iter(chunks)
        self._chunk, self._at = b"", 0
        self._limit = limit
        self.read_so_far = 0

    def read(self, size: int = -1) -> bytes:
        out = []
        while size != 0:
            if self._at >= len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self.read_so_far += len(chunk)
                if self.read_so_far > self._limit:
                    raise UnsafeArchive(f"the archive is longer than {self._limit} bytes: refused")
                self._chunk, self._at = bytes(chunk), 0
                continue
            left = len(self._chunk) - self._at
            take = left if size < 0 else min(size, left)
            out.append(self._chunk[self._at:self._at + take])
            self._at += take
            if size > 0:
                size -= take
        return b"".join(out)


def _parts(name: str, member: str, what: str = "member") -> tuple[str, ...]:
    """The components of an archive path *name*, refusing absolute ones and ``..``."""
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeArchive(f"{what} '{_shown(member)}' is an absolute path: refused")
    raw = name.split("/")
    if ".." in raw:
        raise UnsafeArchive(f"{what} '{_shown(member)}' leaves the target (a `..` component): refused")
    return tuple(part for part in raw if part not in ("", "."))


def link_escapes(directory: tuple[str, ...], target: str, links: dict[tuple[str, ...], str]) -> bool:
    """Whether a symbolic link in *directory* to *target* leaves the top-level item it is in,
    following the other symbolic links of the archive (*links*: path -> target) as the kernel would.

    The top-level item is what lands on the host (under another name, maybe):
    a link that reaches above it (even to come back down) points at the host's
    files, and so does any link that *is* the top-level item.
    """
    if target.startswith("/") or not directory:
        return True
    top = directory[0]
    stack = list(directory)
    pending = target.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if len(stack) <= 1:
                return True
            stack.pop()
            continue
        stack.append(part)
        inner = links.get(tuple(stack))
        if inner is not None:
            hops += 1
            if hops > MAX_HOPS or inner.startswith("/"):
                return True
            stack.pop()
            pending = inner.split("/") + pending
    return stack[:1] != [top]


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    return f"of tar type {member.type!r}"


def _data_filter(member: tarfile.TarInfo, root: Path) -> None:
    """The standard library's own check, where it has one, on top of ours."""
    check = getattr(tarfile, "data_filter", None)
    if check is None:
        return
    try:
        check(member, str(root))
    except tarfile.FilterError as err:
        raise UnsafeArchive(f"member '{_shown(member.name)}' refused: {terminal_safe(str(err))}") from None


def _file_mode(mode: int) -> int:
    mode &= 0o755  # no setuid, setgid, sticky; no group or other write
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def _unpack(tar: tarfile.TarFile, root: Path, result: Unpacked, max_bytes: int, max_members: int) -> None:
    kinds: dict[tuple[str, ...], str] = {}  # explicit members: "dir", "file", "symlink"
    implied: set[tuple[str, ...]] = set()  # directories that members lie in
    symlinks: dict[tuple[str, ...], tarfile.TarInfo] = {}
    directories: list[tuple[Path, tarfile.TarInfo]] = []
    count = 0
    for member in tar:
        count += 1
        if count > max_members:
            raise UnsafeArchive(f"the archive has more than {max_members} members: refused (see --max-files)")
        parts = _parts(member.name, member.name)
        shown = _shown(member.name)
        if not parts:
            if member.isdir():
                continue  # "./": the root itself
            raise UnsafeArchive(f"member '{shown}' has no name: refused")
        if parts in kinds or (parts in implied and not member.isdir()):
            raise UnsafeArchive(f"member '{shown}' appears twice: refused")
        for depth in range(1, len(parts)):
            above = kinds.get(parts[:depth])
            if above not in (None, "dir"):
                raise UnsafeArchive(
                    f"member '{shown}' lies beneath the {'link' if above == 'symlink' else above} "
                    f"'{_shown('/'.join(parts[:depth]))}': refused"
                )
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchive(f"member '{shown}' is {_kind(member)}: only files, directories and links are copied")
        target = root.joinpath(*parts)
        if member.issym():
            if member.linkname.startswith("/") or link_escapes(parts[:-1], member.linkname, {}):
                raise UnsafeArchive(
                    f"member '{shown}' is a link to '{_shown(member.linkname)}', which leaves the target: refused"
                )
            kinds[parts] = "symlink"
            symlinks[parts] = member
            implied.update(parts[:d] for d in range(1, len(parts)))
            continue  # made last, once every link is known
        if member.islnk():
            linked = _parts(member.linkname, member.name, "hard link")
            if kinds.get(linked) != "file":
                raise UnsafeArchive(
                    f"member '{shown}' is a hard link to '{_shown(member.linkname)}', "
                    "which is not a file before it in the archive: refused"
                )
        _data_filter(member, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.isdir():
            target.mkdir(mode=0o700, exist_ok=parts in implied)
            kinds[parts] = "dir"
            directories.append((target, member))
            result.directories += 1
        elif member.islnk():
            os.link(root.joinpath(*linked), target, follow_symlinks=False)
            kinds[parts] = "file"
            result.links += 1
        else:
            result.bytes += member.size
            if result.bytes > max_bytes:
                raise UnsafeArchive(f"the archive holds more than {max_bytes} bytes of files: refused (see --max-size)")
            source = tar.extractfile(member)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            os.chmod(target, _file_mode(member.mode))
            os.utime(target, (member.mtime, member.mtime))
            kinds[parts] = "file"
            result.files += 1
        implied.update(parts[:d] for d in range(1, len(parts)))

    links = {parts: member.linkname for parts, member in symlinks.items()}
    for parts, member in symlinks.items():
        if link_escapes(parts[:-1], member.linkname, links):
            raise UnsafeArchive(
                f"member '{_shown(member.name)}' is a link to '{_shown(member.linkname)}', "
                "which leaves the target through the archive's other links: refused"
            )
    for parts, member in symlinks.items():
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(member.linkname, target)
        result.links += 1
    for parts, member in symlinks.items():
        _data_filter(member, root)
    for target, member in reversed(directories):  # deepest last made, first closed
        os.chmod(target, (member.mode & 0o755) | 0o700)
        os.utime(target, (member.mtime, member.mtime))


@contextlib.contextmanager
def unpack_beside(
    chunks: Iterable[bytes] | bytes,
    parent: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Iterator[Unpacked]:
    """Unpack the tar stream *chunks* into a new temporary directory in *parent*; yield what it holds.

    The caller moves what it wants out of :attr:`Unpacked.root` into place;
    the directory and whatever is left in it are removed on exit, and at once
    when the stream is refused (:class:`UnsafeArchive`).
    """
    scratch = Path(tempfile.mkdtemp(prefix=".bottle-cp-", dir=parent))
    try:
        root = scratch / "root"
        root.mkdir()
        result = Unpacked(root)
        reader = _Chunks(chunks, max_bytes + max_members * 2048 + CHUNK)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                _unpack(tar, root, result, max_bytes, max_members)
        except tarfile.TarError as err:
            raise UnsafeArchive(f"not a readable tar stream: {terminal_safe(str(err))}") from None
        except OSError as err:
            raise EnvironmentProblem(f"unpacking failed: {terminal_safe(str(err))}") from None
        yield result
    finally:
        _remove(scratch)


def _remove(path: Path) -> None:
    def writable(function, name, _exc):  # a directory of mode 0500 holds its files
        os.chmod(os.path.dirname(name), 0o700)
        function(name)

    if path.exists():
        for directory, _, _ in os.walk(path):
            with contextlib.suppress(OSError):
                os.chmod(directory, 0o700)
        shutil.rmtree(path, onerror=writable)


# -- into a guest ---------------------------------------------------------------------------------


@dataclass
class Packed:
    """A host path packed by :func:`pack_path`: the tar stream (a file at offset 0) and what it holds."""

    archive: IO[bytes]
    files: int = 0
    directories: int = 0
    links: int = 0
    bytes: int = 0
    skipped: tuple[str, ...] = ()

    def chunks(self) -> Iterator[bytes]:
        self.archive.seek(0)
        while chunk := self.archive.read(CHUNK):
            yield chunk


def pack_path(path: Path, arcname: str) -> Packed:
    """*path* (a file or a directory) as a tar stream whose one top-level item is *arcname*.

    No symbolic link inside *path* is followed: links travel as links, so
    nothing outside *path* is read. Device nodes, FIFOs and sockets are left
    out (named in :attr:`Packed.skipped`); setuid, setgid and sticky bits are
    dropped. Owners are 0: a backend sets the guest user's.
    """
    packed = Packed(tempfile.SpooledTemporaryFile(max_size=64 * 1024**2))
    skipped: list[str] = []

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            skipped.append(info.name)
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode &= 0o777
        if info.isdir():
            packed.directories += 1
        elif info.isreg():
            packed.files += 1
            packed.bytes += info.size
        else:
            packed.links += 1
        return info

    with tarfile.open(fileobj=packed.archive, mode="w", format=tarfile.PAX_FORMAT, dereference=False) as tar:
        tar.add(str(path), arcname=arcname, recursive=True, filter=keep)
    packed.skipped = tuple(skipped)
    packed.archive.seek(0)
    return packed


def owned_by(chunks: Iterable[bytes] | bytes, *, uid: int, gid: int) -> IO[bytes]:
    """The tar stream *chunks* again, every member owned by *uid*:*gid*, for an engine that
    extracts as root with the headers' owners (only files, directories and links pass)."""
    out = tempfile.SpooledTemporaryFile(max_size=64 * 1024**2)
    reader = _Chunks(chunks, 1 << 62)
    with tarfile.open(fileobj=reader, mode="r|") as source, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as copy:
        for member in source:
            if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                raise UsageError(f"'{_shown(member.name)}' is {_kind(member)}: only files, directories and links are copied")
            member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
            member.mode &= 0o777
            copy.addfile(member, source.extractfile(member) if member.isreg() else None)
    out.seek(0)
    return out
