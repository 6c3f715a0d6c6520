"""Unpacking what came out of a bottle: crafted tars are refused as a whole, nothing is left on disk."""

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from bottle.safe_tar import UnsafeArchive, link_escapes, owned_by, pack_path, unpack_beside


def make_tar(*members) -> bytes:
    """Members as (name, kind, extra): kind file (extra: bytes), dir, sym/hard (extra: target), chr, fifo."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *extra in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                content = extra[0] if extra else b"x"
                info.size, info.mode, data = len(content), (extra[1] if len(extra) > 1 else 0o644), io.BytesIO(content)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, extra[0]
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, extra[0]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, data)
    return buffer.getvalue()


def chunked(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def refused(tmp_path: Path, archive: bytes, **limits) -> str:
    before = sorted(tmp_path.iterdir())
    with pytest.raises(UnsafeArchive) as caught:
        with unpack_beside(chunked(archive), tmp_path, **limits):
            pytest.fail("a refused archive was yielded")
    assert sorted(tmp_path.iterdir()) == before, "something was left on disk"
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "target"
    path.mkdir()
    return path


def test_dotdot_is_refused(target):
    message = refused(target, make_tar(("dir", "dir"), ("dir/ok", "file"), ("dir/../../x", "file")))
    assert "member 'dir/../../x' leaves the target" in message
    assert not (target.parent / "x").exists()


def test_absolute_name_is_refused(target):
    assert "member '/etc/evil' is an absolute path" in refused(target, make_tar(("/etc/evil", "file")))


def test_symlink_out_is_refused(target):
    message = refused(target, make_tar(("dir", "dir"), ("dir/link", "sym", "../../outside")))
    assert "member 'dir/link' is a link to '../../outside', which leaves the target" in message


def test_absolute_symlink_is_refused(target):
    assert "leaves the target" in refused(target, make_tar(("d/passwd", "sym", "/etc/passwd")))


def test_a_link_as_the_top_level_item_is_refused(target):
    assert "member 'link' is a link to 'dir/file'" in refused(target, make_tar(("link", "sym", "dir/file")))


def test_symlink_chain_out_is_refused(target):
    # Each alone stays inside; x through s leaves (the link that makes s comes after x).
    message = refused(target, make_tar(("d", "dir"), ("d/x", "sym", "s/.."), ("d/s", "sym", ".")))
    assert "member 'd/x'" in message and "through the archive's other links" in message


def test_writing_through_a_link_is_refused(target):
    message = refused(target, make_tar(("d/link", "sym", "sub"), ("d/sub", "dir"), ("d/link/file", "file")))
    assert "member 'd/link/file' lies beneath the link 'd/link'" in message


def test_duplicate_names_are_refused(target):
    assert "appears twice" in refused(target, make_tar(("d/a", "file"), ("d/./a", "sym", "b")))


def test_hardlink_out_is_refused(target):
    assert "leaves the target" in refused(target, make_tar(("h", "hard", "../../etc/passwd")))
    assert "absolute path" in refused(target, make_tar(("h", "hard", "/etc/passwd")))


def test_hardlink_to_what_is_not_an_earlier_file_is_refused(target):
    message = refused(target, make_tar(("h", "hard", "later"), ("later", "file")))
    assert "member 'h' is a hard link to 'later', which is not a file before it" in message


def test_device_and_fifo_are_refused(target):
    assert "member 'null' is a character device" in refused(target, make_tar(("null", "chr")))
    assert "member 'pipe' is a FIFO" in refused(target, make_tar(("pipe", "fifo")))


def test_too_many_members(target):
    archive = make_tar(*[(f"f{i}", "file") for i in range(11)])
    assert "more than 10 members" in refused(target, archive, max_members=10)


def test_too_large(target):
    archive = make_tar(("a", "file", b"a" * 600), ("b", "file", b"b" * 600))
    assert "more than 1000 bytes" in refused(target, archive, max_bytes=1000)


def test_a_stream_much_longer_than_the_limits(target):
    huge_header = make_tar(("n" * 2_000_000, "file"))  # a name of 2 MB, in a pax header
    assert "longer than" in refused(target, huge_header, max_bytes=10, max_members=10)


def test_not_a_tar(target):
    assert "not a readable tar stream" in refused(target, b"hello, this is no tar" * 40)


def test_names_shown_are_terminal_safe(target):
    message = refused(target, make_tar(("\x1b[2Jx/../../y", "file")))
    assert "\x1b" not in message and "\\x1b[2Jx/../../y" in message


def test_symlinks_inside_are_kept_and_setuid_is_dropped(target):
    archive = make_tar(
        ("dir", "dir"), ("dir/sub", "dir"), ("dir/sub/tool", "file", b"#!/bin/sh\n", 0o6755),
        ("dir/link", "sym", "sub/tool"), ("dir/sub/up", "sym", "../sub"), ("dir/hard", "hard", "dir/sub/tool"),
        ("dir/dangling", "sym", "missing"),
    )
    with unpack_beside(archive, target) as unpacked:
        root = unpacked.root
        tool = root / "dir/sub/tool"
        assert tool.read_bytes() == b"#!/bin/sh\n"
        assert stat.S_IMODE(tool.stat().st_mode) == 0o755
        assert os.readlink(root / "dir/link") == "sub/tool"
        assert (root / "dir/sub/up").resolve() == (root / "dir/sub").resolve()
        assert os.stat(root / "dir/hard").st_ino == tool.stat().st_ino
        assert (root / "dir/dangling").is_symlink()
        assert (unpacked.files, unpacked.directories, unpacked.links, unpacked.bytes) == (1, 2, 4, 10)
        assert [p.name for p in unpacked.top()] == ["dir"]
    assert list(target.iterdir()) == []  # the scratch directory goes on exit


def test_link_resolution():
    assert not link_escapes(("a", "b"), "../c", {})
    assert link_escapes(("a",), "../b", {})  # above the top-level item, even to a sibling
    assert link_escapes(("a",), "../a/b", {})  # the item lands under another name, maybe
    assert link_escapes((), "anything", {})  # the item itself is a link
    assert link_escapes(("a",), "s/..", {("a", "s"): "."})
    assert not link_escapes(("a", "d"), "s/x", {("a", "d", "s"): "../e"})
    assert link_escapes(("a",), "loop", {("a", "loop"): "loop"})
    assert link_escapes(("a",), "abs/x", {("a", "abs"): "/etc"})


def test_a_directory_round_trips(tmp_path):
    source = tmp_path / "project"
    (source / "src" / "deep").mkdir(parents=True)
    (source / "src" / "deep" / "a.txt").write_text("alpha")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / "empty").mkdir()
    (source / "link").symlink_to("src/deep/a.txt")
    (tmp_path / "secret").write_text("host only")
    (source / "out").symlink_to("../secret")  # travels as a link: the secret is never read
    os.mkfifo(source / "pipe")

    packed = pack_path(source, "copy")
    assert packed.skipped == ("copy/pipe",)
    assert (packed.files, packed.directories, packed.links) == (2, 4, 2)
    data = b"".join(packed.chunks())
    assert b"host only" not in data

    # What the guest would send back: the link out is refused, the rest comes back whole.
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())
    out = tmp_path / "out"
    out.mkdir()
    refused(out, data)
    (source / "out").unlink()
    data = b"".join(pack_path(source, "copy").chunks())
    with unpack_beside(chunked(data, 333), out) as unpacked:
        copy = unpacked.root / "copy"
        assert (copy / "src/deep/a.txt").read_text() == "alpha"
        assert os.access(copy / "run.sh", os.X_OK)
        assert (copy / "empty").is_dir()
        assert os.readlink(copy / "link") == "src/deep/a.txt"
        assert not (copy / "pipe").exists()


def test_owned_by_sets_the_guest_owner(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "f").chmod(0o4755)
    with owned_by(pack_path(tmp_path / "d", "d").chunks(), uid=1000, gid=1001) as archive:
        with tarfile.open(fileobj=archive) as tar:
            members = tar.getmembers()
    assert {(m.name, m.uid, m.gid) for m in members} == {("d", 1000, 1001), ("d/f", 1000, 1001)}
    assert all(not m.mode & 0o7000 for m in members)
