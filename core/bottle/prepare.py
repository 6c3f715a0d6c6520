"""Build the plan: agent + profile + settings + what plugins add, no side effects."""

import fnmatch
import os
import secrets
import socket
import subprocess
from pathlib import Path

from bottle import limits, paths
from bottle.backend import LABEL_AGENT, LABEL_BACKEND, LABEL_HOST, LABEL_PID, LABEL_SLUG
from bottle.errors import EnvironmentProblem, UsageError
from bottle.manifests.agent import find_agent
from bottle.manifests.profile import load_profile, upstream_transport
from bottle.plan import (
    CredentialPlan,
    EgressPlan,
    GitPlan,
    GuestLayout,
    Plan,
    PlanContext,
    PlanFile,
    SidecarPlan,
    SupervisePlan,
)
from bottle.plugins import Plugins
from bottle.settings import Settings

def new_slug(agent_name: str) -> str:
    return f"{agent_name.lower()[:40]}-{secrets.token_hex(3)}"


def _merge_plugin_env(results: list[dict[str, str] | None]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for result in results:
        for key, value in (result or {}).items():
            if key in merged and merged[key] != value:
                raise UsageError(f"Two plugins set the agent's {key} differently ({merged[key]!r} and {value!r}).")
            merged[key] = value
    return merged


def _git_toplevel(path: Path) -> Path | None:
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def plan_git(profile, agent, slug: str, sidecar: SidecarPlan, repo: Path | None, project_dir: Path) -> GitPlan | None:
    """The gate's plan: upstream is the profile's ``[git] upstream``, else the repo under work.

    ``--repo`` (default: the current directory, when it is a git repository)
    chooses what the bottle works on; with neither, the bottle has no gate.
    """
    git = profile.git
    toplevel = _git_toplevel(repo or project_dir)
    if repo is not None and toplevel is None:
        raise UsageError(f"Option --repo: {repo} is not a git repository.")
    upstream = git.upstream or (str(toplevel) if toplevel else None)
    if upstream is None:
        return None
    local = None
    if upstream_transport(upstream) == "local":
        local = Path(upstream).expanduser()
        if not local.exists():
            raise UsageError(f"Profile {profile.name!r}: field `git.upstream`: {local} does not exist.")
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
        gate_url=f"http://{sidecar.hostname}:{sidecar.gate_port}/repo.git",
    )


def build_plan(
    agent_ref: str,
    *,
    settings: Settings,
    plugins: Plugins,
    headless_prompt: str | None = None,
    backend: str | None = None,
    agent_args: tuple[str, ...] = (),
    repo: Path | None = None,
) -> Plan:
    project_dir = paths.project_dir()
    config_dir = paths.config_dir()
    agent = find_agent(agent_ref, project_dir, config_dir)
    profile = load_profile(agent.bottle, config_dir, referrer=f"{agent.path}: field `bottle`: ")
    backend_name = backend or profile.backend or settings.backend
    plugins.backend(backend_name)  # unknown backend: fail now, not at launch

    slug = new_slug(agent.name)
    state_dir = paths.state_root() / slug
    guest = GuestLayout(
        user=settings.guest_user,
        uid=settings.guest_uid,
        home=settings.guest_home,
        workdir=settings.guest_workdir,
        skills_dir=settings.skills_dir,
        prompt_path=f"{settings.guest_home}/.bottle/system-prompt.md",
    )
    sidecar = SidecarPlan(
        image=settings.sidecar_image, ca_cert=state_dir / "ca.pem", audit_max_mb=settings.audit_max_mb
    )
    egress = EgressPlan(
        allow=profile.egress.allow,
        secret_patterns=profile.egress.secret_patterns,
        trust=profile.egress.trust,
        on_secret=profile.egress.secret_modes(),
        secret_exempt=profile.egress.secret_exempt,
        credentials=tuple(
            CredentialPlan(**route.model_dump(), placeholder=route.placeholder)
            for route in profile.credentials
        ),
    )
    git = plan_git(profile, agent, slug, sidecar, repo, project_dir)
    supervise = None
    if profile.supervise.enabled:
        supervise = SupervisePlan(
            answer_timeout=profile.supervise.answer_timeout,
            deny=profile.supervise.deny,
            url=f"http://{sidecar.hostname}:{sidecar.supervise_port}",
        )
    ctx = PlanContext(
        slug=slug,
        agent=agent,
        profile=profile,
        settings=settings,
        project_dir=project_dir,
        state_dir=state_dir,
        prompt_file=state_dir / "system-prompt.md",
        guest=guest,
        sidecar=sidecar,
        egress=egress,
        git=git,
        supervise=supervise,
    )
    hook = plugins.hook
    # What the plan relies on must be there: without them it would run, but not as planned.
    if git is not None:
        plugins.require("bottle_provision_git", f"The git gate (--repo, or [git] of profile {profile.name!r})")
    if supervise is not None:
        plugins.require("bottle_provision_supervise", f"[supervise] of profile {profile.name!r}")
    command = hook.bottle_agent_command(ctx=ctx, headless_prompt=headless_prompt)
    if command is None:
        raise EnvironmentProblem(
            "No plugin says how to start the agent: none answers bottle_agent_command."
            f"{plugins.not_loaded() or ' Install one (see `bottle plugins`).'}"
        )
    files: list[PlanFile] = [f for result in hook.bottle_plan_files(ctx=ctx) for f in (result or [])]
    plugin_args = [arg for result in hook.bottle_plan_agent_args(ctx=ctx) for arg in (result or [])]
    plugin_env = _merge_plugin_env(hook.bottle_plan_env(ctx=ctx))
    argv = [*command.argv, *plugin_args, *agent_args]

    # The agent sees only placeholders for routed credentials, whatever the
    # agent or profile env said; plugins (the proxy settings) override both.
    placeholders = {route.env: route.placeholder for route in egress.credentials}
    env = {**command.env, **agent.env, **profile.env, **placeholders, **plugin_env, "HOME": guest.home}
    return Plan(
        slug=slug,
        agent=agent.name,
        agent_file=agent.path,
        profile=profile.name,
        profile_files=profile.files,
        notes=profile.notes,
        backend=backend_name,
        image=profile.image or settings.image,
        state_dir=state_dir,
        prompt_file=ctx.prompt_file,
        system_prompt=agent.prompt,
        guest=guest,
        resources=limits.resources(profile),
        files=tuple(files),
        egress=egress,
        sidecar=sidecar,
        git=git,
        supervise=supervise,
        claude_argv=tuple(argv),
        env=env,
        headless=headless_prompt is not None,
        labels={
            LABEL_SLUG: slug,
            LABEL_AGENT: agent.name,
            LABEL_BACKEND: backend_name,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
        },
    )


def write_state(plan: Plan) -> Path:
    """Create the bottle's state dir (0700) with the plan and the prompt file (0600)."""
    plan.state_dir.mkdir(parents=True, mode=0o700, exist_ok=False)
    plan.state_dir.chmod(0o700)  # mkdir's mode is masked by the umask
    fd = os.open(plan.prompt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(plan.system_prompt)
    (plan.state_dir / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    return plan.state_dir
