"""Nothing lost at the end: what the agent left unpushed or uncommitted goes upstream through the gate, or
is kept, never dropped (the git plugin's ``bottle_stopping``, ``bottle_git.save``).

The real Claude Code, scripted through the fake Messages API, commits one
file without pushing and leaves another uncommitted, then ends its session.
"""

import subprocess
import tarfile

import pytest

from tests.integration.test_gitgate_bottle import git, refs, upstream  # noqa: F401  (upstream: a fixture)
from tests.support.fake_anthropic import text, tool_use

pytestmark = pytest.mark.integration

LEAVE_WORK = ("echo committed > committed.txt && git add committed.txt && git commit -qm 'Add committed' "
              "&& echo left > uncommitted.txt")
#: An AWS access key id the gate's secret scan knows, written by the guest: the command that
#: writes it holds no key, so the Messages API requests never carry one.
WRITE_SECRET = "printf 'aws_key=AKIA%s\\n' \"$(printf 'Z2X5%.0s' 1 2 3 4)\" > uncommitted.txt"


def run_leaving_work(home, fake_api, api_profile, upstream, command: str):  # noqa: F811
    home.profile("default", api_profile() + f'\n[git]\nupstream = "{upstream}"\n')
    home.agent("leaver", "Leave your work as it is.")
    fake_api.enqueue(tool_use("Bash", {"command": command}), text("Stopping here."))
    return home.run("run", "leaver", "--prompt", "Work, but do not push.")


def test_unpushed_and_uncommitted_work_arrives_upstream_on_the_bottles_branch(home, fake_api, api_profile,
                                                                               upstream):  # noqa: F811
    result = run_leaving_work(home, fake_api, api_profile, upstream, LEAVE_WORK)

    assert result.returncode == 0, result.stderr
    (branch,) = [ref.removeprefix("refs/heads/") for ref in refs(upstream) if ref.startswith("refs/heads/bottle/leaver-")]
    log = git("log", "--format=%an|%s", f"main..{branch}", cwd=upstream).splitlines()
    assert log == ["bottle agent|bottle: work in progress the agent left uncommitted", "bottle agent|Add committed"]
    files = git("ls-tree", "--name-only", branch, cwd=upstream).split()
    assert {"committed.txt", "uncommitted.txt"} <= set(files)
    assert git("show", f"{branch}:uncommitted.txt", cwd=upstream) == "left"
    assert (f"bottle: saved to {branch} on {upstream}: 2 commits the agent had not pushed, its uncommitted work "
            "the last of them") in result.stderr.splitlines()
    assert f"bottle: pushed {branch} to {upstream}" in result.stderr.splitlines()


def test_work_the_gate_refuses_is_kept_and_the_message_says_where(home, fake_api, api_profile,
                                                                   upstream, tmp_path):  # noqa: F811
    before = refs(upstream)
    result = run_leaving_work(home, fake_api, api_profile, upstream, WRITE_SECRET)

    assert result.returncode == 0, result.stderr
    assert refs(upstream) == before, "nothing reaches upstream"
    lines = result.stderr.splitlines()
    (refused,) = [line for line in lines if line.startswith("bottle: could not save the agent's work through the git gate")]
    assert "the push holds what looks like a secret: AWS Access Key" in refused, result.stderr
    assert "AKIA" not in result.stderr, "the message names the finding, not the secret"
    (kept,) = [line for line in lines if "is kept in" in line]
    path = kept.split(" is kept in ")[1].split(" (tar -xf")[0]
    with tarfile.open(path) as archive:
        names = archive.getnames()
        assert "./uncommitted.txt" in names and any(name.startswith("./.git/") for name in names)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-C", str(unpacked), "-xf", path], check=True)
    assert (unpacked / "uncommitted.txt").read_text().startswith("aws_key=AKIA")
    assert "bottle: work in progress" in git("-c", "safe.directory=*", "log", "-1", "--format=%s", cwd=unpacked)


def test_a_working_copy_that_pushes_elsewhere_does_not_pass_for_saved(home, fake_api, api_profile, upstream,
                                                                      tmp_path):  # noqa: F811
    """The agent points its clone's pushes at a repository of its own: git says the push worked, the gate's
    audit log has no record of it, so bottle says it could not save, and keeps the work."""
    before = refs(upstream)
    elsewhere = ("git init --quiet --bare /tmp/elsewhere.git && git config remote.origin.pushurl /tmp/elsewhere.git "
                 "&& echo left > uncommitted.txt")
    result = run_leaving_work(home, fake_api, api_profile, upstream, elsewhere)

    assert result.returncode == 0, result.stderr
    assert refs(upstream) == before
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("bottle: saved to")], result.stderr
    assert ("bottle: could not save the agent's work through the git gate (the gate has no record of the push "
            "(the working copy's git configuration sent it elsewhere?))") in lines
    assert any("is kept in" in line for line in lines)
