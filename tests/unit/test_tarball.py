"""bottle.tarball.pack: plan files in one tar stream, owned by the guest user."""

import io
import stat
import tarfile

import pytest

from bottle.plan import PlanFile
from bottle.tarball import pack

UID, GID, HOME = 1234, 2345, "/home/agent"


def members(files, *, owned_below=HOME) -> dict[str, tarfile.TarInfo]:
    data = pack(files, uid=UID, gid=GID, owned_below=owned_below)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
        names = [info.name for info in infos]
        assert len(names) == len(set(names)), f"duplicate entries: {names}"
        return {info.name: info for info in infos}


def content(files, name) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(pack(files, uid=UID, gid=GID, owned_below=HOME))) as tar:
        return tar.extractfile(name).read()


def plan_file(host, guest):
    return PlanFile(host_path=host, guest_path=guest, provider="test")


@pytest.fixture
def files(tmp_path):
    """A skill directory (with a subdir) and a prompt file, as the provisioners plan them."""
    skill = tmp_path / "skill"
    (skill / "scripts").mkdir(parents=True)
    (skill / "SKILL.md").write_text("# skill\n")
    (skill / "scripts" / "run.sh").write_text("#!/bin/sh\n")
    (skill / "scripts" / "run.sh").chmod(0o755)
    prompt = tmp_path / "system-prompt.md"
    prompt.write_text("Be brief.")
    prompt.chmod(0o600)
    return [
        plan_file(skill, f"{HOME}/.claude/skills/review"),
        plan_file(prompt, f"{HOME}/.bottle/system-prompt.md"),
    ]


def test_entries(files):
    assert set(members(files)) == {
        "home/agent/.claude",
        "home/agent/.claude/skills",
        "home/agent/.claude/skills/review",
        "home/agent/.claude/skills/review/SKILL.md",
        "home/agent/.claude/skills/review/scripts",
        "home/agent/.claude/skills/review/scripts/run.sh",
        "home/agent/.bottle",
        "home/agent/.bottle/system-prompt.md",
    }
    assert content(files, "home/agent/.bottle/system-prompt.md") == b"Be brief."
    assert content(files, "home/agent/.claude/skills/review/SKILL.md") == b"# skill\n"


def test_parents_come_before_their_children(files):
    names = list(members(files))
    for name in names:
        parent = name.rsplit("/", 1)[0]
        if parent in names:
            assert names.index(parent) < names.index(name)


def test_everything_is_owned_by_the_guest_user(files):
    for info in members(files).values():
        assert (info.uid, info.gid, info.uname, info.gname) == (UID, GID, "", ""), info.name


def test_created_parents_are_owned_directories_0755(files):
    for name in ("home/agent/.claude", "home/agent/.claude/skills", "home/agent/.bottle"):
        info = members(files)[name]
        assert info.isdir()
        assert stat.S_IMODE(info.mode) == 0o755


def test_nothing_at_or_above_owned_below(files):
    names = members(files)
    assert not {"home", "home/agent", "/home", "/home/agent"} & set(names)
    assert all(name.startswith("home/agent/") for name in names)


def test_file_modes_preserved(files):
    infos = members(files)
    assert stat.S_IMODE(infos["home/agent/.bottle/system-prompt.md"].mode) == 0o600
    assert stat.S_IMODE(infos["home/agent/.claude/skills/review/scripts/run.sh"].mode) == 0o755


def test_shared_parents_are_added_once(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    infos = members([plan_file(a, f"{HOME}/x/y/a"), plan_file(b, f"{HOME}/x/y/b")])
    assert list(infos) == ["home/agent/x", "home/agent/x/y", "home/agent/x/y/a", "home/agent/x/y/b"]


def test_outside_owned_below_no_parents_are_made(tmp_path):
    source = tmp_path / "f"
    source.write_text("f")
    assert list(members([plan_file(source, "/opt/skills/f")])) == ["opt/skills/f"]


def test_sibling_with_common_prefix_is_not_owned(tmp_path):
    # /home/agent2 is not below /home/agent
    source = tmp_path / "f"
    source.write_text("f")
    assert list(members([plan_file(source, "/home/agent2/sub/f")])) == ["home/agent2/sub/f"]


def test_symlinks_are_dereferenced(tmp_path):
    skill = tmp_path / "skill"
    skill.mkdir()
    (skill / "real.md").write_text("real")
    (skill / "link.md").symlink_to("real.md")
    infos = members([plan_file(skill, f"{HOME}/s")])
    assert infos["home/agent/s/link.md"].isfile()
    assert content([plan_file(skill, f"{HOME}/s")], "home/agent/s/link.md") == b"real"


def test_empty_plan_is_an_empty_tar():
    assert members([]) == {}
