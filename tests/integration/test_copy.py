"""``bottle cp`` with a real bottle held mid-session: a directory round-trips, owned by the agent
user inside; links the agent planted to get out of the target are refused, and nothing is written."""

import os
from pathlib import Path

from tests.integration.test_escape import bottles  # noqa: F401 (the fixture: bottles held mid-session)


def tree(root: Path) -> list[tuple]:
    """Every path under *root*: name, then a link's target, a file's bytes and exec bit, or None for a directory."""
    return sorted(
        (str(p.relative_to(root)), os.readlink(p) if p.is_symlink()
         else (p.read_bytes(), os.access(p, os.X_OK)) if p.is_file() else None)
        for p in root.rglob("*")
    )


def test_a_directory_round_trips_and_links_out_are_refused(home, api_profile, bottles, tmp_path, engine):  # noqa: F811
    home.profile("default", api_profile())
    inmate = bottles("copier")
    slug = inmate.slug
    tmp_path = tmp_path / "host"  # (the home's own directories are in tmp_path)
    tmp_path.mkdir()

    source = tmp_path / "project"
    (source / "src" / "deep").mkdir(parents=True)
    (source / "src" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 64)
    (source / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (source / "run.sh").chmod(0o755)
    (source / "empty").mkdir()
    (source / "link").symlink_to("src/deep/data.bin")

    copied = home.run("cp", str(source), f"{slug}:/workspace")
    assert copied.returncode == 0, copied.stderr
    assert "copied 2 files, 4 directories, 1 link" in copied.stderr

    # Inside: everything is the agent user's, who runs and writes what came in.
    code, out = inmate.sh("find /workspace/project \\( ! -user \"$(id -u)\" -o ! -group \"$(id -g)\" \\) | wc -l")
    assert (code, out.strip()) == (0, "0")
    code, out = inmate.sh("id -u; stat -c %u /workspace/project/src/deep/data.bin")
    uid, owner = out.split()
    assert code == 0 and uid == owner != "0"
    code, out = inmate.sh("/workspace/project/run.sh && touch /workspace/project/empty/new && "
                          "rm /workspace/project/empty/new && readlink /workspace/project/link")
    assert (code, out.split()) == (0, ["ran", "src/deep/data.bin"]), out

    back = tmp_path / "back"
    copied = home.run("cp", f"{slug}:/workspace/project", str(back), "--json")
    assert copied.returncode == 0, copied.stderr
    assert tree(back) == tree(source)
    assert '"files": 2' in copied.stdout

    # The agent plants links out of the directory the operator will copy.
    before = sorted(tmp_path.iterdir())
    code, out = inmate.sh("mkdir -p /workspace/evil/sub && echo fine > /workspace/evil/ok && "
                          "ln -s /etc/passwd /workspace/evil/sub/passwd")
    assert code == 0, out
    refused = home.run("cp", f"{slug}:/workspace/evil", str(tmp_path / "evil"))
    assert refused.returncode == 2, refused.stderr
    assert "member 'evil/sub/passwd' is a link to '/etc/passwd', which leaves the target" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(tmp_path.iterdir()) == before  # nothing written, no scratch directory left

    code, out = inmate.sh("rm /workspace/evil/sub/passwd && ln -s ../../outside /workspace/evil/sub/up")
    assert code == 0, out
    refused = home.run("cp", f"{slug}:/workspace/evil", str(tmp_path))  # into an existing directory, too
    assert refused.returncode == 2, refused.stderr
    assert "member 'evil/sub/up' is a link to '../../outside', which leaves the target" in refused.stderr
    assert sorted(tmp_path.iterdir()) == before

    # docker cp's placement: a new name becomes the item, a file is replaced by a file.
    (tmp_path / "note.txt").write_text("new note")
    assert home.run("cp", str(source), f"{slug}:/workspace/renamed").returncode == 0
    assert home.run("cp", str(tmp_path / "note.txt"), f"{slug}:/workspace/project/run.sh").returncode == 0
    code, out = inmate.sh("cat /workspace/project/run.sh; echo; ls /workspace/renamed/src/deep")
    assert (code, out.split()) == (0, ["new", "note", "data.bin"]), out
    nowhere = home.run("cp", str(source), f"{slug}:/nowhere/x")
    assert nowhere.returncode == 2 and "there is no directory /nowhere in the bottle" in nowhere.stderr
    (tmp_path / "note.txt").unlink()

    missing = home.run("cp", f"{slug}:/workspace/none", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no such path in the bottle" in missing.stderr
    inmate.stop()  # the session ends, and the bottle with it
    inmate.process = None  # (stopped already: the fixture has nothing left to wait for)
    # Stopped, its files are still there to copy out (and in), through a container that never starts.
    late = home.run("cp", f"{slug}:/workspace/project", str(tmp_path / "late"))
    assert late.returncode == 0, late.stderr
    assert (tmp_path / "late/run.sh").read_text() == "new note"
    assert home.run("cp", str(tmp_path / "late/run.sh"), f"{slug}:/workspace/back.sh").returncode == 0
    again = home.run("cp", f"{slug}:/workspace/back.sh", str(tmp_path / "back.sh"))
    assert again.returncode == 0 and (tmp_path / "back.sh").read_text() == "new note", again.stderr
    missing = home.run("cp", f"{slug}:/workspace/none", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no such path in the bottle" in missing.stderr
    assert not engine.containers.list(all=True, filters={"label": f"bottle.slug={slug}"}), "a copy left a container"
