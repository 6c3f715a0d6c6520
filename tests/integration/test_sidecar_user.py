"""Least privilege for the sidecar: its daemons run as an unprivileged user of their own.

Started as root (as CI starts it), every process of a real bottle's sidecar is
the image's ``sidecar`` user, with no capability, and the operator loses
nothing: the audit log and the state dir read as before, the allowlist changes
live, and a push through the gate to a local upstream owned by someone else
lands written by that someone, not by the sidecar's uid or root. Started by
anyone else, the sidecar is that user (nobody else can be given their files).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bottle.sidecar.runtime import SIDECAR_UID
from bottle_egress.policy_file import policy_path
from tests.integration.test_escape import Bottled
from tests.support.fake_anthropic import FakeMessagesAPI

EXPECTED_UID = SIDECAR_UID if os.geteuid() == 0 else os.getuid()
#: Who owns the local upstream: as root, a user with no account here, as when root runs bottle on a user's repository.
OWNER = 4242 if os.geteuid() == 0 else os.getuid()


def git(*args: str) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def upstream():
    """A bare repository with a main branch, owned by OWNER, where OWNER can reach it."""
    base = Path(tempfile.mkdtemp(prefix="bottle-upstream-test-"))
    base.chmod(0o755)
    bare, seed = base / "upstream.git", base / "seed"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "README").write_text("upstream\n")
    git("-C", str(seed), "add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "-C", str(seed), "commit", "--quiet", "-m", "seed")
    git("-C", str(seed), "push", "--quiet", str(bare), "main")
    for path in [bare, *bare.rglob("*")]:
        os.chown(path, OWNER, OWNER, follow_symlinks=False)
    yield bare
    shutil.rmtree(base)


def process_ids(status: str) -> dict[str, set[str]]:
    """``grep -H`` of every process's status: the Uid, Gid and CapEff values seen (real, effective, saved, fs)."""
    seen: dict[str, set[str]] = {"Uid": set(), "Gid": set(), "CapEff": set()}
    for line in status.splitlines():
        match = re.match(r"/proc/\d+/status:(Uid|Gid|CapEff):\s*(.*)", line)
        if match:
            seen[match.group(1)].update(match.group(2).split())
    return seen


def test_the_sidecar_runs_unprivileged_and_the_operator_keeps_its_state(
    home, engine, fake_api, api_profile, host_gateway, upstream_ca, upstream
):
    home.profile("default", api_profile() + f'\n[git]\nupstream = "{upstream}"\n')
    home.agent("least", "Hold still.")
    with FakeMessagesAPI(host="0.0.0.0", tls=(upstream_ca.cert, upstream_ca.key)) as docs:
        rule = f"{host_gateway}:{docs.port}"
        bottle = Bottled(home, engine, fake_api).start("least")
        try:
            _, status = bottle.sh("grep -H -E '^(Uid|Gid|CapEff):' /proc/[0-9]*/status", container=bottle.sidecar)
            allowed = home.run("egress", "allow", bottle.slug, rule)
            reached = bottle.curl(f"{docs.url_for(host_gateway)}/v1/messages/count_tokens", "-d", "{}")
            commit = "git -c core.hooksPath=/dev/null commit --quiet -m work"
            pushed = bottle.sh(f"cd /workspace && echo work > work.txt && git add work.txt && {commit} && "
                               "git push 2>&1 && git rev-parse HEAD", timeout=60)
            policy_file = policy_path(home.state / bottle.slug)  # read as the operator, while the sidecar runs
            state = sorted(path.name for path in policy_file.parent.iterdir())
            policy = json.loads(policy_file.read_text())
        finally:
            bottle.stop()
    audit = home.run("audit", bottle.slug, "--json")

    ids = process_ids(status)
    assert ids["Uid"] == {str(EXPECTED_UID)} and ids["Gid"] == {str(EXPECTED_UID)}, status
    assert ids["CapEff"] == {"0000000000000000"}, status
    assert allowed.returncode == 0 and rule in policy["allow"], allowed.stderr
    assert reached == (0, "200"), reached
    assert {"audit.sqlite", "gitgate.json", "policy.json"} <= set(state), state
    assert audit.returncode == 0, audit.stderr
    assert ("operator", "rule-added") in {(event["source"], event["decision"]) for event in json.loads(audit.stdout)}
    code, out = pushed
    assert code == 0, out
    assert git("-C", str(upstream), "rev-parse", f"refs/heads/bottle/{bottle.slug}") == out.splitlines()[-1]
    strangers = sorted(f"{path} ({path.lstat().st_uid})" for path in [upstream, *upstream.rglob("*")]
                       if path.lstat().st_uid != OWNER)
    assert strangers == [], f"files in the upstream someone else than its owner wrote: {strangers}"
