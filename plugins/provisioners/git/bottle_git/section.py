"""The git plugin's part of the plan: the gate, decided from ``[git]`` and the repository under work."""

import fnmatch
import subprocess
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from bottle.errors import UsageError
from bottle.plan import PlanContext, PlanSection
from bottle_git.tables import GitCredential, GitIdentity, upstream_transport

GATE_PORT = 8418


class GitPlan(PlanSection):
    """The git gate: what the agent clones from and pushes to, and what reaches upstream."""

    SECTION: ClassVar[str] = "git"

    upstream: str = Field(description="the real remote, as the gate sees it")
    local_upstream: Path | None = Field(
        None, description="host path of a local upstream, which the host serves to the gate (bottle_git.upstream_relay)"
    )
    push_refs: tuple[str, ...] = Field(description="the profile's, {slug} replaced")
    fetch_refs: tuple[str, ...] = Field(description="what the gate mirrors besides push_refs; HEAD: upstream's default")
    protected: tuple[str, ...] | None = Field(description="None: upstream's default branch")
    allow_force: bool
    max_push_mb: int
    max_push_refs: int
    identity: GitIdentity
    credential: GitCredential | None = Field(None, description="where the gate's credential is read from")
    known_hosts: str | None = None
    start_from: str | None = Field(None, description="branch to start from (default: upstream's default)")
    work_branch: str = Field(description="the branch the agent works on")
    gate_url: str


def _git_toplevel(path: Path) -> Path | None:
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def plan_git(ctx: PlanContext) -> GitPlan | None:
    """The gate's plan: upstream is the profile's ``[git] upstream``, else the repo under work.

    ``--repo`` (default: the current directory, when it is a git repository)
    chooses what the bottle works on; with neither, the bottle has no gate. A
    resumed bottle keeps its last run's upstream unless the profile names one.
    """
    git, agent, slug, repo = ctx.profile.table("git"), ctx.agent, ctx.slug, ctx.repo
    before = ctx.previous.section(GitPlan) if ctx.previous is not None else None
    if before is not None and repo is None and not git.upstream:
        upstream = before.upstream  # a resumed bottle works on what it worked on, wherever it is resumed from
    else:
        toplevel = _git_toplevel(repo or ctx.project_dir)
        if repo is not None and toplevel is None:
            raise UsageError(f"Option --repo: {repo} is not a git repository.")
        upstream = git.upstream or (str(toplevel) if toplevel else None)
    if upstream is None:
        return None
    local = None
    if upstream_transport(upstream) == "local":
        local = Path(upstream).expanduser()
        if not local.exists():
            raise UsageError(f"Profile {ctx.profile.name!r}: field `git.upstream`: {local} does not exist.")
        local = local.resolve()

    def for_bottle(patterns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(pattern.replace("{slug}", slug) for pattern in patterns)

    push_refs = for_bottle(git.push_refs)
    own_branch = agent.branch and any(
        fnmatch.fnmatchcase(f"refs/heads/{agent.branch}", pattern) for pattern in push_refs
    )
    # By default the agent fetches what it starts from: upstream's default branch, and its `branch`.
    fetch_refs = git.fetch_refs if git.fetch_refs is not None else (
        "HEAD", *([f"refs/heads/{agent.branch}"] if agent.branch else []))
    return GitPlan(
        upstream=str(local) if local else upstream,
        local_upstream=local,
        push_refs=push_refs,
        fetch_refs=for_bottle(fetch_refs),
        protected=git.protected,
        allow_force=git.allow_force,
        max_push_mb=git.max_push_mb,
        max_push_refs=git.max_push_refs,
        identity=git.identity,
        credential=git.credential,
        known_hosts=git.known_hosts,
        start_from=agent.branch,
        work_branch=agent.branch if own_branch else f"bottle/{slug}",
        gate_url=f"{ctx.sidecar.url(GATE_PORT)}/repo.git",
    )
