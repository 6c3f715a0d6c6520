"""Git through the gate, from inside a real bottle, against a local upstream.

The upstream is a bare repository on the host, mounted into the sidecar only.
Every refused push must leave upstream exactly as it was.
"""

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


def test_pushes_through_the_gate(home, engine, fake_api, api_profile, upstream):
    home.profile("default", api_profile(extra="") + f'\n[git]\nupstream = "{upstream}"\nmax_push_mb = 1\n')
    home.agent("pusher", "Hold still.")
    bottle = Bottled(home, engine, fake_api).start("pusher")
    results = {}
    try:
        branch = f"bottle/{bottle.slug}"
        code, out = bottle.sh("cd /workspace && git branch --show-current && git remote -v && git config --list")
        assert code == 0, out
        assert out.splitlines()[0] == branch
        assert str(upstream) not in out and "http://sidecar:8418/repo.git" in out
        assert bottle.sh(f"test -e {upstream}")[0] != 0, "the upstream path must not exist in the agent's container"

        commit = "git -c core.hooksPath=/dev/null commit --quiet -m"
        results["clean"] = bottle.sh(f"cd /workspace && echo one > one.txt && git add one.txt && {commit} one && git push 2>&1")
        landed = refs(upstream)
        results["main"] = bottle.sh("cd /workspace && git push origin HEAD:main 2>&1")
        results["force"] = bottle.sh(f"cd /workspace && {commit} amended --amend && git push --force 2>&1")
        results["delete"] = bottle.sh("cd /workspace && git push origin :bottle/other 2>&1")
        results["size"] = bottle.sh(
            f"cd /workspace && git reset --quiet --hard origin/{branch} && head -c 3000000 /dev/urandom > big.bin "
            f"&& git add big.bin && {commit} big && git push 2>&1"
        )
        results["secret"] = bottle.sh(
            f"cd /workspace && git reset --quiet --hard origin/{branch} && printf 'id = {AWS_KEY}\\n' > conf.ini "
            f"&& git add conf.ini && {commit} conf && git push 2>&1"
        )
        after_refusals = refs(upstream)
        # Upstream unreachable: the gate (no capabilities) can no longer open it.
        upstream.chmod(0)
        try:
            results["unreachable"] = bottle.sh(
                f"cd /workspace && git reset --quiet --hard origin/{branch} && echo two > two.txt && git add two.txt "
                f"&& {commit} two && git push 2>&1; git log --format=%s -1"
            )
        finally:
            upstream.chmod(0o755)
    finally:
        bottle.stop()

    assert results["clean"][0] == 0, results["clean"]
    assert landed[f"refs/heads/{branch}"] == git("rev-parse", f"refs/heads/{branch}", cwd=upstream)
    for case in ("main", "force", "delete", "size", "secret"):
        code, out = results[case]
        assert code != 0, (case, out)
        assert "remote:" in out or "rejected" in out, (case, out)
    assert "protected" in results["main"][1] or "refs/heads/main" in results["main"][1]
    assert "conf.ini" in results["secret"][1] and AWS_KEY not in results["secret"][1]
    assert after_refusals == landed, "a refused push changed upstream"
    assert refs(upstream) == landed
    code, out = results["unreachable"]
    assert "upstream" in out.lower() and out.splitlines()[-1] == "two", out
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
