"""Whom the sidecar runs as, and what on the host is handed to that user.

Root's sidecar is the image's ``sidecar`` user; anyone else's is themselves.
The files the sidecar writes (its part of the state dir, the proposal queue)
are that user's, and the policy the host rewrites live stays readable to it
whatever the host's umask.
"""

import os
import re
from pathlib import Path

from bottle.sidecar import runtime as sidecar_runtime
from bottle_images.build import dockerfile
from bottle.sidecar.runtime import SIDECAR_UID, hand_over, sidecar_user
from bottle_egress.policy_file import policy_path, write_policy
from bottle_supervise.desk import QUEUE_FILE, prepare_queue

#: Whom this process's sidecars run as.
EXPECTED = (SIDECAR_UID, SIDECAR_UID) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def test_roots_sidecar_is_the_sidecar_user_and_anyone_elses_is_themselves(monkeypatch):
    monkeypatch.setattr(sidecar_runtime.os, "geteuid", lambda: 0)
    assert sidecar_user() == (SIDECAR_UID, SIDECAR_UID)
    monkeypatch.setattr(sidecar_runtime.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sidecar_runtime.os, "getuid", lambda: 1000)
    monkeypatch.setattr(sidecar_runtime.os, "getgid", lambda: 100)
    assert sidecar_user() == (1000, 100)


def test_the_sidecar_image_makes_its_user_with_that_uid_and_gid():
    text = dockerfile("sidecar").read_text()
    assert re.search(rf"groupadd .*--gid {SIDECAR_UID} sidecar", text)
    assert re.search(rf"useradd .*--uid {SIDECAR_UID} --gid sidecar", text)


def owners(*paths: Path) -> set[tuple[int, int]]:
    return {(path.lstat().st_uid, path.lstat().st_gid) for path in paths}


def test_handed_over_files_are_the_sidecars_users(tmp_path):
    file = tmp_path / "audit.sqlite"
    file.write_text("")
    hand_over([tmp_path, file])
    assert owners(tmp_path, file) == {EXPECTED}


def test_a_policy_rewritten_live_stays_the_sidecars_whatever_the_umask(tmp_path):
    policy_path(tmp_path).parent.mkdir()
    previous = os.umask(0o077)
    try:
        write_policy(tmp_path, {"allow": ["example.org"]})
    finally:
        os.umask(previous)
    assert owners(policy_path(tmp_path)) == {EXPECTED}


def test_the_proposal_queue_is_the_sidecars_users_alone(tmp_path):
    directory = prepare_queue(tmp_path)
    assert owners(directory, *directory.iterdir()) == {EXPECTED}
    assert (directory / QUEUE_FILE).exists() and directory.stat().st_mode & 0o777 == 0o700
