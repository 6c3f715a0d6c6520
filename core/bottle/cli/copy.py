"""``bottle cp``: copy a file or a directory out of a bottle, or into one, running or stopped.

Exactly one side is ``SLUG:PATH`` (PATH absolute, in the guest); the other is
a path on the host. As ``docker cp``: when the destination is an existing
directory, the item goes inside it under its own name; otherwise it becomes
the destination. What comes out of a bottle is unpacked by
:func:`bottle.safe_tar.unpack_beside` (refused as a whole, nothing written, at
the first sign of an escape) and then moved into place; what goes in is packed
without following any link (:func:`bottle.safe_tar.pack_path`) and ends up
owned by the guest user.
"""

import os
import posixpath
import re
import sys
from pathlib import Path

import typer

#: ``SLUG:PATH``; anything else is a host path (write ``./a:b`` for a host path with a colon).
GUEST = re.compile(r"^(?P<slug>[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<path>.*)$", re.S)


def _guest(spec: str) -> tuple[str, str] | None:
    match = GUEST.match(spec)
    return (match["slug"], match["path"]) if match else None


def _summary(what) -> str:
    parts = [f"{what.files} file{'' if what.files == 1 else 's'}"]
    if what.directories:
        parts.append(f"{what.directories} director{'y' if what.directories == 1 else 'ies'}")
    if what.links:
        parts.append(f"{what.links} link{'' if what.links == 1 else 's'}")
    return f"{', '.join(parts)}, {what.bytes} bytes"


def _backend_of(slug: str):
    """The backend of bottle *slug*, running or stopped: its files are in its volumes either way."""
    from bottle.cli.manage import find
    from bottle.errors import UsageError

    bottle = find(slug)
    if bottle.backend is None:
        raise UsageError(f"Bottle {slug!r} is {bottle.status}: nothing of its files is left to copy.")
    return bottle.backend


def _parse(src: str, dst: str) -> tuple[str, str, str, str]:
    """(direction, slug, guest path, host path) from the two arguments."""
    from bottle.errors import UsageError

    inside_src, inside_dst = _guest(src), _guest(dst)
    if inside_src and inside_dst:
        raise UsageError(f"Both SRC {src!r} and DST {dst!r} are SLUG:PATH; one side must be a path on this machine.")
    if not inside_src and not inside_dst:
        raise UsageError(
            f"Neither SRC {src!r} nor DST {dst!r} is SLUG:PATH (a path in a bottle); "
            "one side must be, e.g. `bottle cp SLUG:/workspace/out ./out`."
        )
    direction, (slug, guest), host, which = (
        ("out", inside_src, dst, "SRC") if inside_src else ("in", inside_dst, src, "DST")
    )
    if not guest.startswith("/"):
        raise UsageError(f"The path in {which} {slug}:{guest} must be absolute (e.g. {slug}:/workspace/{guest or 'x'}).")
    guest = posixpath.normpath(guest)
    if guest.startswith("//"):
        guest = "/" + guest.lstrip("/")
    if guest == "/":
        raise UsageError(f"{which} {slug}:/ is the whole guest: name a file or directory below it.")
    if host == "":
        raise UsageError(f"The host path ({'DST' if direction == 'out' else 'SRC'}) is empty.")
    return direction, slug, guest, host


def _copy_out(backend, slug: str, guest: str, host: Path, max_bytes: int, max_files: int):
    from bottle.errors import UsageError
    from bottle.safe_tar import unpack_beside

    if host.is_dir():
        parent, final = host, None  # the item goes inside, under its own name
    else:
        parent, final = host.parent, host
        if not parent.is_dir():
            raise UsageError(f"DST {str(host)!r}: its directory {str(parent)!r} does not exist.")
    try:
        stream = backend.copy_out(slug, guest)
    except FileNotFoundError:
        raise UsageError(f"SRC {slug}:{guest}: there is no such path in the bottle.") from None
    with unpack_beside(stream, parent, max_bytes=max_bytes, max_members=max_files) as unpacked:
        top = unpacked.top()
        if len(top) != 1:
            raise UsageError(f"SRC {slug}:{guest} came out as {len(top)} items, not one: nothing was copied.")
        item = top[0]
        if final is None:
            final = parent / item.name
        if final.is_symlink() or final.exists():
            if final.is_dir() or item.is_dir() or final.is_symlink():
                raise UsageError(f"{str(final)!r} exists already: `bottle cp` replaces only a file with a file.")
        os.replace(item, final)
    return unpacked, final


def cp(
    src: str = typer.Argument(..., metavar="SRC", help="SLUG:PATH in a bottle, or a path on this machine."),
    dst: str = typer.Argument(..., metavar="DST", help="A path on this machine, or SLUG:PATH in a bottle."),
    max_size: str = typer.Option("4g", "--max-size", help="Refuse copying out more than this (512m, 4g, bytes)."),
    max_files: int = typer.Option(200_000, "--max-files", help="Refuse copying out more members than this."),
    as_json: bool = typer.Option(False, "--json", help="Print what was copied as JSON on stdout."),
) -> None:
    """Copy a file or directory between a bottle, running or stopped, and this machine: bottle cp SLUG:/workspace/out ./out"""
    from bottle.cli.common import print_json
    from bottle.display import terminal_safe
    from bottle.errors import UsageError
    from bottle.limits import size_bytes
    from bottle.safe_tar import pack_path

    direction, slug, guest, host_arg = _parse(src, dst)
    try:
        max_bytes = size_bytes(max_size)
    except (ValueError, IndexError):
        raise UsageError(f"--max-size {max_size!r} is not a size (512m, 4g, or bytes).") from None
    host = Path(host_arg).expanduser()
    if direction == "in" and not (host.exists() or host.is_symlink()):
        raise UsageError(f"SRC {host_arg!r} does not exist.")
    backend = _backend_of(slug)

    if direction == "out":
        what, final = _copy_out(backend, slug, guest, host, max_bytes, max_files)
        source, destination = f"{slug}:{guest}", str(final)
    else:
        item = host.resolve() if host.is_symlink() else host  # the operator named it: that link is followed
        directory, name = guest, item.resolve().name or "item"
        what = pack_path(item, name)
        try:
            try:  # an existing directory: the item goes inside
                backend.copy_in(slug, directory, what.chunks())
            except (FileNotFoundError, NotADirectoryError):  # else it becomes DST
                what.archive.close()
                directory, name = posixpath.dirname(guest), posixpath.basename(guest)
                what = pack_path(item, name)
                backend.copy_in(slug, directory, what.chunks())
        except FileNotFoundError:
            raise UsageError(f"DST {slug}:{guest}: there is no directory {directory} in the bottle.") from None
        except NotADirectoryError:
            raise UsageError(f"DST {slug}:{guest}: {directory} is not a directory in the bottle.") from None
        finally:
            what.archive.close()
        for skipped in what.skipped:
            print(f"bottle: skipped {terminal_safe(skipped)}: not a file, directory or link", file=sys.stderr)
        source, destination = str(host), f"{slug}:{posixpath.join(directory, name)}"

    print(f"copied {_summary(what)} from {terminal_safe(source)} to {terminal_safe(destination)}", file=sys.stderr)
    if as_json:
        print_json({
            "direction": direction, "slug": slug, "source": source, "destination": destination,
            "files": what.files, "directories": what.directories, "links": what.links, "bytes": what.bytes,
        })
