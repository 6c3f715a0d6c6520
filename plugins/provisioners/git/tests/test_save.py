"""What the git plugin tells the user when it saves the agent's leftover work at the end (``bottle_git.save``),
on a fake bottle: the script's answer, the gate's reason, the kept tar. The real thing runs in
tests/integration/test_session_end.py."""

import io
import tarfile
from types import SimpleNamespace

from bottle.backend import ExecResult
from bottle_git import save

GIT = SimpleNamespace(work_branch="bottle/x-1", upstream="/srv/app.git",
                      identity=SimpleNamespace(name="bottle agent", email="agent@bottle.invalid"))


class FakeBottle:
    durable = False  # a backend that keeps no volume: the work is kept as a tar

    def __init__(self, *answers: ExecResult):
        self.answers, self.calls = list(answers), []

    def exec(self, argv, **kwargs):
        self.calls.append(argv)
        return self.answers.pop(0)


def answer(stdout: bytes = b"", stderr: bytes = b"", code: int = 0) -> ExecResult:
    return ExecResult(exit_code=code, stdout=stdout, stderr=stderr)


def plan(tmp_path):
    return SimpleNamespace(slug="x-1", guest=SimpleNamespace(workdir="/workspace"), state_dir=tmp_path,
                           section=lambda kind: GIT)


def gate_records(tmp_path, decision: str = "allowed", ref: str = "refs/heads/bottle/x-1") -> None:
    """What the gate writes to the bottle's audit log when it forwards (or refuses) a push."""
    from bottle.sidecar.runtime import audit_path
    from bottle_sidecar.audit import AuditLog

    audit_path(tmp_path).parent.mkdir(exist_ok=True)
    log = AuditLog(audit_path(tmp_path), "x-1")
    log.record("git", decision, method="push", path=ref, detail={"new": "1" * 40})
    log.close()


class DurableBottle(FakeBottle):
    durable = True


class PushingBottle(FakeBottle):
    """A guest whose push, as the save script runs, reaches the gate (which records it) or not."""

    def __init__(self, tmp_path, *answers, recorded: bool = True):
        super().__init__(*answers)
        self.tmp_path, self.recorded = tmp_path, recorded

    def exec(self, argv, **kwargs):
        if self.recorded and not self.calls:
            gate_records(self.tmp_path)
        return super().exec(argv, **kwargs)


def test_nothing_to_save_says_nothing(tmp_path):
    for said in (b"none 0 0\n", b"saved 0 0\n"):
        assert save.save_work(plan(tmp_path), GIT, FakeBottle(answer(said))) == []


def test_saved_work_names_the_commits_the_branch_and_upstream(tmp_path):
    assert save.save_work(plan(tmp_path), GIT, PushingBottle(tmp_path, answer(b"saved 1 0\n"))) == [
        "saved to bottle/x-1 on /srv/app.git: 1 commit the agent had not pushed"]
    assert save.save_work(plan(tmp_path), GIT, PushingBottle(tmp_path, answer(b"saved 1 1\n"))) == [
        "saved to bottle/x-1 on /srv/app.git: 1 commit the agent had not pushed: its uncommitted work"]
    assert save.save_work(plan(tmp_path), GIT, PushingBottle(tmp_path, answer(b"saved 3 1\n"))) == [
        "saved to bottle/x-1 on /srv/app.git: 3 commits the agent had not pushed, its uncommitted work the last "
        "of them"]


def test_a_refusal_gives_the_gates_reason_escaped_and_keeps_the_working_copy(tmp_path):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("./notes.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    refused = answer(b"refused 1 1\n", b"remote: bottle git gate: push refused\nremote: refs/heads/bottle/x-1: "
                     b"refused: the push holds what looks like a secret: AWS Access Key in a\x1b[2Jb line 1\n"
                     b"remote:   instead: remove it\nerror: failed to push some refs\n")
    bottle = FakeBottle(refused, answer(b"1234\t/workspace\n"), answer(tar.getvalue()))

    lines = save.save_work(plan(tmp_path), GIT, bottle)

    assert lines[0] == ("could not save the agent's work through the git gate (the push holds what looks like a "
                        "secret: AWS Access Key in a\\x1b[2Jb line 1)")
    kept = tmp_path / save.KEPT
    assert lines[1].startswith(f"the whole working copy, .git included, is kept in {kept}")
    assert kept.read_bytes() == tar.getvalue() and kept.stat().st_mode & 0o777 == 0o600
    assert bottle.calls[1] == ["du", "-sb", "/workspace"] and bottle.calls[2][:3] == ["tar", "-C", "/workspace"]


def test_a_working_copy_too_large_to_keep_is_said_so(tmp_path):
    big = str(save.KEEP_LIMIT + 1).encode()
    lines = save.save_work(plan(tmp_path), GIT, FakeBottle(answer(b"refused 1 0\n", b"fatal: gone\n", 128),
                                                          answer(big + b"\t/workspace\n")))
    assert lines == ["could not save the agent's work through the git gate (fatal: gone)",
                     f"/workspace ({int(big)} bytes) is too large to keep; nothing was saved"]


def test_a_save_the_gate_has_no_record_of_is_not_called_saved_and_the_work_is_kept(tmp_path):
    """The guest says "saved", but its git pushed elsewhere (a remote rewritten in .git/config): the gate's
    log, not the guest, decides; an older push of the branch does not count."""
    gate_records(tmp_path)  # an earlier push, before the save
    tar = answer(b"")
    bottle = PushingBottle(tmp_path, answer(b"saved 2 1\n"), answer(b"10\t/workspace\n"), tar, recorded=False)

    lines = save.save_work(plan(tmp_path), GIT, bottle)

    assert lines[0] == ("could not save the agent's work through the git gate (the gate has no record of the push "
                        "(the working copy's git configuration sent it elsewhere?))")
    assert "is kept in" in lines[1]


def test_work_the_gate_refuses_stays_in_a_durable_bottle_and_rm_is_told(tmp_path):
    refused = answer(b"refused 2 1\n", b"remote: refs/heads/bottle/x-1: refused: too large\n")
    bottle = DurableBottle(refused)

    lines = save.save_work(plan(tmp_path), GIT, bottle)

    assert lines == ["could not save the agent's work through the git gate (too large)",
                     "it stays in bottle x-1's /workspace: `bottle resume x-1` goes on with it, and `bottle rm x-1` "
                     "will not delete it without --force"]
    assert len(bottle.calls) == 1, "nothing is copied out: the volume holds it"
    assert not (tmp_path / save.KEPT).exists()
    assert save.unsaved(plan(tmp_path)) == ["2 commits the git gate did not take (too large)"]
    assert save.describe(plan(tmp_path))["unsaved"] == "2"


def test_what_only_the_bottle_holds_is_known_from_its_last_stop_and_unknown_while_it_runs(tmp_path):
    stopped = plan(tmp_path)
    assert save.unsaved(stopped) == [
        "what its working copy holds is unknown: its last run did not end through bottle (killed?), so nothing "
        "was saved"]
    assert save.describe(stopped) == {"repository": "/srv/app.git", "branch": "bottle/x-1", "unsaved": "?"}

    save.save_work(stopped, GIT, PushingBottle(tmp_path, answer(b"saved 1 0\n")))
    assert save.unsaved(stopped) is None and save.describe(stopped)["unsaved"] == "0"

    save.forget(stopped)  # the next run starts
    assert save.describe(stopped)["unsaved"] == "?"
