"""The git plugin (entry point ``git``): the git gate in the sidecar, and the agent's working copy cloned through it.

Its profile table is ``[git]``; its plan section (``bottle_git.section``) is
decided from that and the repository under work (``--repo``, or the current
directory when it is a git repository); with neither, the bottle has no gate.
At launch it writes the gate's config into the sidecar's state, hands the
gate the upstream credential (the sidecar alone holds it) and, for a local
upstream, starts the host's relay (``bottle_git.upstream_relay``). When the
bottle is gone, the run's summary names the branches the gate took upstream.

The guest's only remote is the gate (``origin``); the upstream URL and its
credential stay in the sidecar. The agent works on a branch it may push
(``bottle/<slug>`` unless the agent names one that the profile's
``push_refs`` allow), so a plain ``git push`` lands upstream once the gate
has checked it. One exec does it all: provisioning stays one engine round
trip per step.
"""

import json
import os
import subprocess

from bottle import hookimpl
from bottle.display import terminal_safe
from bottle.errors import EnvironmentProblem
from bottle_git.image_part import bottle_sidecar_image_parts  # noqa: F401 -- the gate's image part

GIT_CREDENTIAL = "bottle-git-upstream"  # its name in the sidecar's credentials file
LOCAL_UPSTREAM = "/bottle/upstream"  # what the gate calls a local upstream, which it reaches on:
UPSTREAM_SOCKET = "/bottle/upstream.sock"  # the host's relay (bind-mounted)
GATE_CONFIG = "gitgate.json"
READY = "bottle-gitgate: listening"

SCRIPT = r"""
set -eu
git config --global user.name "$BOTTLE_GIT_NAME"
git config --global user.email "$BOTTLE_GIT_EMAIL"
git config --global --add safe.directory "$BOTTLE_WORKDIR"
git config --global credential.helper ""
git config --global push.default current
git config --global push.autoSetupRemote true
if [ -d "$BOTTLE_WORKDIR/.git" ]; then exit 0; fi  # a resumed bottle's: the agent's work, as it left it
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
def bottle_register_profile_tables(register):
    from bottle_git.tables import TABLES  # pydantic: not for `bottle --help`

    register(*TABLES)


@hookimpl
def bottle_plan_section(ctx):
    from bottle_git.section import plan_git

    return plan_git(ctx)


@hookimpl
def bottle_sidecar_services(ctx):
    from bottle.sidecar.service import AUDIT, CREDENTIALS, STATE_MOUNT, SidecarService
    from bottle_git.section import GATE_PORT, GitPlan

    if ctx.section(GitPlan) is None:
        return None
    argv = (
        "python", "-m", "bottle_gitgate_sidecar.gitgate", "--listen-host", "0.0.0.0", "--listen-port", str(GATE_PORT),
        "--repo", f"{STATE_MOUNT}/gate.git", "--config", f"{STATE_MOUNT}/{GATE_CONFIG}",
        "--credentials", CREDENTIALS, "--audit", AUDIT,
    )
    return [SidecarService(name="gitgate", argv=argv, ready=READY, port=GATE_PORT, part="gitgate")]


@hookimpl
def bottle_sidecar_prepare(plan, sidecar):
    from bottle.sidecar.runtime import sidecar_user
    from bottle.sidecar.service import SecretRef
    from bottle_git.section import GitPlan
    from bottle_git.upstream_relay import UpstreamRelay

    git = plan.section(GitPlan)
    if git is None:
        return
    credential = git.credential
    if credential is not None:
        field = "git.credential.env" if credential.env else "git.credential.file"
        sidecar.secret(SecretRef(name=GIT_CREDENTIAL, env=credential.env, file=credential.file,
                                 what=f"Field `{field}`: the git credential"))
    sidecar.state_file(GATE_CONFIG, json.dumps(gate_config(plan.slug, git), indent=2))
    if git.local_upstream:
        relay = UpstreamRelay(git.local_upstream)
        sidecar.callback(relay.stop)
        relay.start(sidecar_user())
        sidecar.mount(relay.socket_path, UPSTREAM_SOCKET)


def gate_config(slug: str, git) -> dict:
    """The gate's config file: no secret in it (the credential is named, its value is in the tmpfs)."""
    credential = None
    if git.credential is not None:
        credential = {"kind": git.credential.kind, "name": GIT_CREDENTIAL, "username": git.credential.username}
    config = {
        "bottle": slug,
        "upstream": LOCAL_UPSTREAM if git.local_upstream else git.upstream,
        "push_refs": list(git.push_refs),
        "fetch_refs": list(git.fetch_refs),
        "protected": protected_refs(git),
        "allow_force": git.allow_force,
        "max_push_mb": git.max_push_mb,
        "max_push_refs": git.max_push_refs,
        "credential": credential,
    }
    if git.known_hosts:
        config["known_hosts"] = git.known_hosts
    if git.local_upstream:
        config["relay"] = UPSTREAM_SOCKET
    return config


def protected_refs(git) -> list[str]:
    """The profile's protected refs, or upstream's default branch (asked of upstream now)."""
    if git.protected is not None:
        return list(git.protected)
    try:
        out = subprocess.run(
            ["git", "ls-remote", "--symref", "--", git.upstream, "HEAD"],
            capture_output=True, text=True, timeout=20,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        ).stdout
    except subprocess.TimeoutExpired:
        out = ""
    heads = [line[5:].split("\t")[0] for line in out.splitlines() if line.startswith("ref: ")]
    return heads[:1] or ["refs/heads/main", "refs/heads/master"]


@hookimpl
def bottle_run_summary(plan, events):
    """The branches the gate took upstream, in push order; a ref the agent deleted again is not upstream any more."""
    from bottle_git.section import GitPlan

    git = plan.section(GitPlan)
    if git is None:
        return None
    branches: dict[str, None] = {}
    for event in events:
        if (event["source"], event["decision"], event["method"]) == ("git", "allowed", "push"):
            if not event["detail"]["new"].strip("0"):  # all zeros: the push deleted it (SHA-1 or SHA-256)
                branches.pop(event["path"], None)
            else:
                branches[event["path"]] = None
    # Ref names are the agent's: git refuses ASCII controls in them, but not C1 or bidi characters.
    pushed = ", ".join(terminal_safe(ref.removeprefix("refs/heads/")) for ref in branches) or "nothing"
    return [f"pushed {pushed} to {git.upstream}"]


@hookimpl
def bottle_stopping(plan, bottle):
    """Before teardown, while the gate still runs: save what the agent left (``bottle_git.save``)."""
    from bottle_git.save import report, save_work
    from bottle_git.section import GitPlan

    git = plan.section(GitPlan)
    if git is not None:
        report(save_work(plan, git, bottle))


@hookimpl
def bottle_started(plan, bottle):
    """The record of the last stop no longer holds: until this run's stop, what the working copy holds is unknown."""
    from bottle_git.save import forget

    forget(plan)


@hookimpl
def bottle_describe(plan):
    from bottle_git.save import describe

    return describe(plan)


@hookimpl
def bottle_unsaved_work(plan):
    from bottle_git.save import unsaved

    return unsaved(plan)


@hookimpl
def bottle_provision_git(plan, bottle):
    from bottle_git.section import GitPlan

    git = plan.section(GitPlan)
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
