"""Nothing lost at the end: what the agent left unpushed or uncommitted goes upstream through the gate, or
is kept, never dropped (the git plugin's ``bottle_stopping``, ``bottle_git.save``).

The real Claude Code, scripted through the fake Messages API, commits one
file without pushing and leaves another uncommitted, then ends its session.
"""

import json

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


def test_work_the_gate_refuses_stays_in_the_bottle_and_rm_will_not_delete_it(home, fake_api, api_profile, upstream,
                                                                             engine, agent_image):  # noqa: F811
    before = refs(upstream)
    result = run_leaving_work(home, fake_api, api_profile, upstream, WRITE_SECRET)

    assert result.returncode == 0, result.stderr
    assert refs(upstream) == before, "nothing reaches upstream"
    lines = result.stderr.splitlines()
    (refused,) = [line for line in lines if line.startswith("bottle: could not save the agent's work through the git gate")]
    assert "the push holds what looks like a secret: AWS Access Key" in refused, result.stderr
    assert "AKIA" not in result.stderr, "the message names the finding, not the secret"
    (slug,) = [entry["slug"] for entry in json.loads(home.run("ls", "--json").stdout)]
    assert (f"bottle: it stays in bottle {slug}'s /workspace: `bottle resume {slug}` goes on with it, and "
            f"`bottle rm {slug}` will not delete it without --force") in lines
    held = engine.containers.run(  # the volume, as any container mounting it sees it
        agent_image, ["sh", "-c", "cat uncommitted.txt; git -c safe.directory='*' log -1 --format=%s"],
        volumes={f"bottle-{slug}-workdir": {"bind": "/w", "mode": "ro"}}, working_dir="/w", network_mode="none",
        remove=True, user="root").decode()
    assert held.startswith("aws_key=AKIA") and "bottle: work in progress" in held, held

    refusal = home.run("rm", slug)
    assert refusal.returncode == 1, refusal.stderr
    assert f"bottle: not removing {slug}: it holds work nothing else does:" in refusal.stderr
    assert "1 commit the git gate did not take (the push holds what looks like a secret" in refusal.stderr
    assert engine.volumes.list(filters={"label": f"bottle.slug={slug}"}), "the refused rm deleted the volumes"

    forced = home.run("rm", "--force", slug)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == f"removed {slug}"
    assert home.run("gc").returncode == 0
    assert not engine.volumes.list(filters={"label": "bottle.slug"})
    assert not (home.state / slug).exists()
    assert json.loads(home.run("ls", "--json").stdout) == []


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
    assert any("it stays in bottle" in line for line in lines)
