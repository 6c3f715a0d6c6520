"""Git through the gate, from inside a real bottle, against a local upstream.

The upstream is a bare repository on the host, which the host serves to the gate
(``bottle_git.upstream_relay``): the agent's container never sees it.
Every refused push must leave upstream exactly as it was.
"""

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_escape import AWS_KEY, Bottled
from tests.support.fake_anthropic import text, tool_use


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path) -> Path:
    bare = tmp_path / "upstream.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(work))
    (work / "README").write_text("upstream\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work), "commit", "--quiet", "-am", "x", "--allow-empty")
    git("-C", str(work), "add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work), "commit", "--quiet", "-m", "seed")
    git("-C", str(work), "push", "--quiet", "origin", "main", "main:refs/heads/bottle/other")
    return bare


def refs(bare: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)
    return dict(line.split() for line in out.splitlines())


def _refusal(out: str, ref: str) -> str:
    """The gate's reason for refusing *ref*, from the agent's ``git push`` output ("" if it gave none).
    git pads the lines it relays from the remote with spaces."""
    prefix = f"remote: {ref}: refused: "
    lines = [line.rstrip() for line in out.splitlines()]
    return next((line.removeprefix(prefix) for line in lines if line.startswith(prefix)), "")


def test_pushes_through_the_gate(home, engine, fake_api, api_profile, upstream):
    """Each refused push fails with the gate's own reason and leaves upstream's refs as they were;
    a push upstream cannot take fails with a non-zero exit and leaves the commit in the agent's clone."""
    # shared/*: refs the agent may push but did not create, so may not delete.
    git("update-ref", "refs/heads/shared/seeded", "refs/heads/main", cwd=upstream)
    home.profile("default", api_profile(extra="") + f'\n[git]\nupstream = "{upstream}"\nmax_push_mb = 1\n'
                 'push_refs = ["refs/heads/bottle/{slug}", "refs/heads/shared/*"]\n')
    home.agent("pusher", "Hold still.")
    bottle = Bottled(home, engine, fake_api).start("pusher")
    results, upstream_after = {}, {}
    try:
        branch = f"bottle/{bottle.slug}"
        code, out = bottle.sh("cd /workspace && git branch --show-current && git remote -v && git config --list")
        assert code == 0, out
        assert out.splitlines()[0] == branch
        assert str(upstream) not in out and "http://sidecar:8418/repo.git" in out
        assert bottle.sh(f"test -e {upstream}")[0] != 0, "the upstream path must not exist in the agent's container"

        def push(case: str, script: str) -> None:
            results[case] = bottle.sh(f"cd /workspace && {script} 2>&1", timeout=30)
            upstream_after[case] = refs(upstream)

        commit = "git -c core.hooksPath=/dev/null commit --quiet -m"
        fresh = f"git reset --quiet --hard origin/{branch} &&"
        push("clean", f"echo one > one.txt && git add one.txt && {commit} one && git push")
        landed = upstream_after["clean"]
        push("main", "git push origin HEAD:main")
        push("force", f"{commit} amended --amend && git push --force")
        push("foreign", "git push origin HEAD:bottle/other")
        push("delete", "git push origin :shared/seeded")
        # Over max_push_mb (1) but under git's own hard limit (twice that): the gate's size check.
        push("size", f"{fresh} head -c 1500000 /dev/urandom > big.bin && git add big.bin && {commit} big && git push")
        # Over the hard limit: git refuses the pack before the hook runs.
        push("hard-limit", f"{fresh} head -c 3000000 /dev/urandom > big.bin && git add big.bin && {commit} big "
                           "&& git push")
        push("secret", f"{fresh} printf 'id = {AWS_KEY}\\n' > conf.ini && git add conf.ini && {commit} conf "
                       "&& git rev-parse HEAD && git push")
        # Upstream unreachable: moved away, the host's relay can no longer open it.
        code, out = bottle.sh(f"cd /workspace && {fresh} echo two > two.txt && git add two.txt && {commit} two")
        assert code == 0, out
        moved = upstream.with_name("moved-away.git")
        upstream.rename(moved)
        try:
            results["unreachable"] = bottle.sh("cd /workspace && git push 2>&1", timeout=30)
        finally:
            moved.rename(upstream)
        upstream_after["unreachable"] = refs(upstream)
        code, out = bottle.sh("cd /workspace && git log --format=%s -1")
        results["kept"] = code, out.strip()
    finally:
        bottle.stop()

    code, out = results["clean"]
    assert code == 0 and f"remote: bottle git gate: refs/heads/{branch} forwarded to upstream" in out, out
    # The commit upstream could not take stayed in the agent's clone, and the bottle saved it at the end.
    assert git("log", "--format=%s", f"{landed[f'refs/heads/{branch}']}..refs/heads/{branch}", cwd=upstream) == "two"
    secret_commit = results["secret"][1].splitlines()[0]
    expected = {
        "main": ("refs/heads/main", "refs/heads/main is protected: the gate never updates it"),
        "force": (f"refs/heads/{branch}", f"refs/heads/{branch} would lose commits (not a fast-forward) "
                                          "and force pushes are not allowed"),
        # Another bottle's branch: push_refs name this bottle's own only.
        "foreign": ("refs/heads/bottle/other", f"refs/heads/bottle/other is not a ref the agent may push (allowed: "
                                               f"refs/heads/{branch}, refs/heads/shared/*)"),
        "delete": ("refs/heads/shared/seeded", "refs/heads/shared/seeded was not created through the gate, "
                                               "so it may not be deleted"),
        "size": (f"refs/heads/{branch}", re.compile(r"the push adds 1\.[0-9] MB of objects, more than the 1 MB "
                                                    r"a push may add")),
        "secret": (f"refs/heads/{branch}", "the push holds what looks like a secret: AWS Access Key in "
                                           f"conf.ini line 1 (commit {secret_commit[:12]})"),
        "unreachable": (f"refs/heads/{branch}", re.compile(r"upstream did not take the push: .+")),
    }
    for case, (ref, why) in expected.items():
        code, out = results[case]
        assert code != 0, (case, out)
        reason = _refusal(out, ref)
        assert (why.fullmatch(reason) if isinstance(why, re.Pattern) else reason == why), (case, out)
        assert "bottle git gate: push refused; nothing reached upstream" in out, (case, out)
        assert upstream_after[case] == landed, f"the refused {case} push changed upstream"
    code, out = results["hard-limit"]
    assert code != 0 and "pack exceeds maximum allowed size" in out, out
    assert upstream_after["hard-limit"] == landed, "the refused hard-limit push changed upstream"
    assert AWS_KEY not in results["secret"][1]
    assert results["kept"] == (0, "two"), "the commit upstream did not take must stay in the agent's clone"

    # Every refusal is in the audit log, in order, with the check that refused it.
    rows = [e for e in bottle.audit() if e["source"] == "git" and e["decision"] == "blocked"]
    assert [e["detail"]["check"] for e in rows] == ["protected", "force", "ref", "delete", "size", "size", "secret",
                                                    "upstream"], rows
    assert AWS_KEY not in (home.state / bottle.slug / "sidecar" / "audit.sqlite").read_bytes().decode(errors="replace")


def test_agent_commits_and_pushes(home, fake_api, api_profile, upstream):
    home.profile("default", api_profile() + f'\n[git]\nupstream = "{upstream}"\n')
    home.agent("committer", "Commit your work.")
    fake_api.enqueue(
        tool_use("Bash", {"command": "echo done > result.txt && git add result.txt && git commit -qm 'Add result' && git push -q"}),
        text("Pushed."),
    )

    result = home.run("run", "committer", "--prompt", "Do the work and push it.")

    assert result.returncode == 0, result.stderr
    pushed = [ref for ref in refs(upstream) if ref.startswith("refs/heads/bottle/committer-")]
    assert len(pushed) == 1, refs(upstream)
    assert git("log", "--format=%s", "-1", pushed[0], cwd=upstream) == "Add result"
    assert git("show", f"{pushed[0]}:result.txt", cwd=upstream) == "done"
