"""Provisioner ``git``: the agent's working copy, cloned through the git gate.

The guest's only remote is the gate (``origin``); the upstream URL and its
credential stay in the sidecar. The agent works on a branch it may push
(``bottle/<slug>`` unless the agent names one that the profile's
``push_refs`` allow), so a plain ``git push`` lands upstream once the gate
has checked it. One exec does it all: provisioning stays one engine round
trip per step.
"""

from bottle import hookimpl
from bottle.errors import EnvironmentProblem

SCRIPT = r"""
set -eu
git config --global user.name "$BOTTLE_GIT_NAME"
git config --global user.email "$BOTTLE_GIT_EMAIL"
git config --global --add safe.directory "$BOTTLE_WORKDIR"
git config --global credential.helper ""
git config --global push.default current
git config --global push.autoSetupRemote true
git clone --quiet "$BOTTLE_GATE" "$BOTTLE_WORKDIR" 2>&1 | grep -v "empty repository" >&2 || true
test -d "$BOTTLE_WORKDIR/.git"
cd "$BOTTLE_WORKDIR"
if [ -n "$BOTTLE_START" ] && [ "$BOTTLE_START" != "$BOTTLE_BRANCH" ]; then
    git checkout --quiet "$BOTTLE_START"
fi
if git rev-parse --verify --quiet "refs/remotes/origin/$BOTTLE_BRANCH" >/dev/null; then
    git checkout --quiet "$BOTTLE_BRANCH"
else
    git checkout --quiet -b "$BOTTLE_BRANCH"
fi
"""


@hookimpl
def bottle_provision_git(plan, bottle):
    git = plan.git
    if git is None:
        return
    result = bottle.exec(
        ["sh", "-c", SCRIPT],
        env={
            "BOTTLE_GIT_NAME": git.identity.name,
            "BOTTLE_GIT_EMAIL": git.identity.email,
            "BOTTLE_WORKDIR": plan.guest.workdir,
            "BOTTLE_GATE": git.gate_url,
            "BOTTLE_START": git.start_from or "",
            "BOTTLE_BRANCH": git.work_branch,
        },
    )
    if result.exit_code != 0:
        raise EnvironmentProblem(
            f"Could not clone {git.upstream} through the git gate into {plan.guest.workdir}:\n"
            + result.stderr.decode(errors="replace").strip()
        )
