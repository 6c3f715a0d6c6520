"""``bottle cp`` on a fake backend whose "guest" is a directory here: placement, messages, refusals."""

import io
import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from bottle.backend import Availability, Backend, BottleInfo
from bottle.errors import BottleError, EnvironmentProblem

SLUG = "worker-0a1b2c"


class GuestDir(Backend):
    """A backend whose one bottle's filesystem is *root* on the host (absolute guest paths map below it)."""

    name = "fake"

    def __init__(self, root: Path, status: str = "running"):
        self.root, self.status = root, status
        self.copied_in: list[tuple[str, list[tarfile.TarInfo]]] = []

    def where(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def availability(self):
        return Availability(True)

    def list(self):
        return [BottleInfo(SLUG, "worker", self.name, self.status, "", None, "")]

    def copy_out(self, slug, path):
        assert slug == SLUG
        source = self.where(path)
        if not (source.exists() or source.is_symlink()):
            raise FileNotFoundError(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(source, arcname=source.name)
        data = buffer.getvalue()
        return iter([data[i:i + 700] for i in range(0, len(data), 700)])

    def copy_in(self, slug, path, tar):
        directory = self.where(path)
        if not directory.exists():
            raise FileNotFoundError(path)
        if not directory.is_dir():
            raise NotADirectoryError(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(tar))) as archive:
            self.copied_in.append((path, archive.getmembers()))
            archive.extractall(directory, filter="fully_trusted")

    open_network = open = stop = remove = exec_interactive = None


@pytest.fixture
def guest(tmp_path, monkeypatch):
    from bottle.cli import common

    backend = GuestDir(tmp_path / "guest")
    (backend.root / "workspace").mkdir(parents=True)
    monkeypatch.setattr(common, "settings_and_plugins", lambda: (None, SimpleNamespace(backends={"fake": backend})))
    monkeypatch.chdir(tmp_path)
    return backend


def bottle_cp(*args: str) -> SimpleNamespace:
    """``bottle cp ARGS`` in this process: exit code, stdout, stderr (a BottleError as `bottle` prints it)."""
    from bottle.cli.copy import cp

    app = typer.Typer()
    app.command()(cp)
    result = CliRunner().invoke(app, list(args))
    stderr = result.stderr
    code = result.exit_code
    if isinstance(result.exception, BottleError):
        stderr += f"bottle: {result.exception}\n"
        code = result.exception.exit_code
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(code=code, out=result.stdout, err=stderr)


def make_tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "notes.txt").write_text("notes")
    (root / "link").symlink_to("notes.txt")
    return root


def same_tree(a: Path, b: Path) -> bool:
    def listing(root):
        return sorted(
            (str(p.relative_to(root)), os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None)
            for p in root.rglob("*")
        )

    return listing(a) == listing(b)


# -- argument errors: exit 2, one line naming the argument, no traceback --------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["a", "b"], "Neither SRC 'a' nor DST 'b' is SLUG:PATH"),
        ([f"{SLUG}:/x", f"{SLUG}:/y"], f"Both SRC '{SLUG}:/x' and DST '{SLUG}:/y' are SLUG:PATH"),
        ([f"{SLUG}:workspace/x", "out"], f"The path in SRC {SLUG}:workspace/x must be absolute"),
        (["missing-here", f"{SLUG}:/workspace"], "SRC 'missing-here' does not exist"),
        (["ghost-000000:/workspace", "out"], "No bottle 'ghost-000000'"),
        ([f"{SLUG}:/workspace/none", "out"], f"SRC {SLUG}:/workspace/none: there is no such path in the bottle"),
        ([f"{SLUG}:/workspace", "no/such/dir/out"], "DST 'no/such/dir/out': its directory 'no/such/dir' does not exist"),
        ([f"{SLUG}:/", "out"], "is the whole guest"),
        ([f"{SLUG}:/workspace", "out", "--max-size", "lots"], "--max-size 'lots' is not a size"),
    ],
)
def test_bad_arguments(guest, args, fragment):
    result = bottle_cp(*args)
    assert result.code == 2, result
    assert fragment in result.err
    assert "Traceback" not in result.err and result.out == ""


def test_a_bottle_only_its_state_dir_knows_is_a_clear_error(guest, monkeypatch):
    from bottle.cli import manage

    monkeypatch.setattr(manage, "every_bottle", lambda: [manage.Found(SLUG, "gone")])
    result = bottle_cp(f"{SLUG}:/workspace", "out")
    assert result.code == 2
    assert f"Bottle '{SLUG}' is gone: nothing of its files is left to copy." in result.err


def test_a_backend_that_cannot_copy_says_so():
    class Old(GuestDir):
        copy_out = Backend.copy_out
        copy_in = Backend.copy_in

    old = Old(Path("/nonexistent"))
    with pytest.raises(EnvironmentProblem, match="backend 'fake' cannot copy files"):
        old.copy_out(SLUG, "/x")
    with pytest.raises(EnvironmentProblem, match="backend 'fake' cannot copy files"):
        old.copy_in(SLUG, "/x", b"")


def test_help_through_the_real_cli(run_bottle):
    code, out, _ = run_bottle("cp", "--help")
    assert code == 0 and "bottle cp" in out and "SLUG:PATH" in out


def test_argument_errors_through_the_real_cli(home, run_bottle):
    code, out, err = run_bottle("cp", "here", "there")
    assert (code, out) == (2, "")
    assert err.startswith("bottle: Neither SRC 'here' nor DST 'there'") and "Traceback" not in err


# -- placement and round trips ----------------------------------------------------------------


def test_a_directory_round_trips(guest, tmp_path):
    source = make_tree(tmp_path / "project")

    result = bottle_cp(str(source), f"{SLUG}:/workspace")  # an existing directory: goes inside
    assert result.code == 0, result.err
    assert same_tree(source, guest.where("/workspace/project"))
    assert "copied 2 files, 2 directories, 1 link" in result.err

    result = bottle_cp(f"{SLUG}:/workspace/project", "back", "--json")  # no such host path: becomes it
    assert result.code == 0, result.err
    assert same_tree(source, tmp_path / "back")
    report = json.loads(result.out)
    assert report | {"destination": None} == {
        "direction": "out", "slug": SLUG, "source": f"{SLUG}:/workspace/project", "destination": None,
        "files": 2, "directories": 2, "links": 1, "bytes": len("print('hi')\n") + len("notes"),
    }
    assert Path(report["destination"]) == Path("back")

    (tmp_path / "into").mkdir()
    assert bottle_cp(f"{SLUG}:/workspace/project", "into").code == 0  # an existing directory: goes inside
    assert same_tree(source, tmp_path / "into" / "project")
    assert not [p for p in tmp_path.rglob(".bottle-cp-*")]


def test_copy_in_to_a_new_name_and_over_a_file(guest, tmp_path):
    source = make_tree(tmp_path / "project")
    assert bottle_cp(str(source), f"{SLUG}:/workspace/renamed").code == 0  # no such guest path: becomes it
    assert same_tree(source, guest.where("/workspace/renamed"))
    path, members = guest.copied_in[-1]
    assert path == "/workspace" and {m.name.split("/")[0] for m in members} == {"renamed"}

    guest.where("/workspace/notes").write_text("old")
    assert bottle_cp(str(source / "notes.txt"), f"{SLUG}:/workspace/notes").code == 0  # a file: replaced
    assert guest.where("/workspace/notes").read_text() == "notes"

    result = bottle_cp(str(source), f"{SLUG}:/nowhere/x")
    assert result.code == 2 and "there is no directory /nowhere in the bottle" in result.err


def test_copy_in_never_follows_a_link_out_of_the_source(guest, tmp_path):
    source = make_tree(tmp_path / "project")
    (tmp_path / "secret").write_text("host only")
    (source / "leak").symlink_to("../secret")
    assert bottle_cp(str(source), f"{SLUG}:/workspace").code == 0
    _, members = guest.copied_in[-1]
    leak = next(m for m in members if m.name == "project/leak")
    assert leak.issym() and leak.linkname == "../secret"
    assert all(m.uid == 0 for m in members)  # the backend sets the guest user's


def test_copy_out_refuses_a_link_out_and_writes_nothing(guest, tmp_path):
    work = make_tree(guest.where("/workspace/dir"))
    (work / "src" / "passwd").symlink_to("/etc/passwd")
    before = sorted(tmp_path.iterdir())

    result = bottle_cp(f"{SLUG}:/workspace/dir", "out")
    assert result.code == 2
    assert "member 'dir/src/passwd' is a link to '/etc/passwd', which leaves the target" in result.err
    assert sorted(tmp_path.iterdir()) == before

    (work / "src" / "passwd").unlink()
    (work / "src" / "up").symlink_to("../../outside")
    result = bottle_cp(f"{SLUG}:/workspace/dir", "out")
    assert result.code == 2 and "member 'dir/src/up' is a link to '../../outside'" in result.err
    assert sorted(tmp_path.iterdir()) == before


def test_copy_out_does_not_merge_into_an_existing_directory(guest, tmp_path):
    make_tree(guest.where("/workspace/dir"))
    (tmp_path / "out" / "dir").mkdir(parents=True)
    result = bottle_cp(f"{SLUG}:/workspace/dir", "out")
    assert result.code == 2 and "exists already" in result.err
    assert list((tmp_path / "out" / "dir").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dir"]


def test_copy_out_limits(guest, tmp_path):
    make_tree(guest.where("/workspace/dir"))
    result = bottle_cp(f"{SLUG}:/workspace/dir", "out", "--max-files", "3")
    assert result.code == 2 and "more than 3 members" in result.err
    result = bottle_cp(f"{SLUG}:/workspace/dir", "out", "--max-size", "10")
    assert result.code == 2 and "more than 10 bytes" in result.err
    assert not (tmp_path / "out").exists()


def test_names_from_the_guest_are_terminal_safe(guest, tmp_path):
    work = guest.where("/workspace/dir")
    work.mkdir()
    (work / "\x1b]0;pwned\x07").symlink_to("/etc")
    result = bottle_cp(f"{SLUG}:/workspace/dir", "out")
    assert result.code == 2 and "\x1b" not in result.err and "\\x1b]0;pwned\\x07" in result.err
