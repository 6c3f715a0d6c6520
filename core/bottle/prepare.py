"""Build the plan: agent + profile + settings + what plugins add, no side effects."""

import os
import secrets
import socket
from pathlib import Path

from bottle import limits, paths
from bottle.backend import LABEL_AGENT, LABEL_BACKEND, LABEL_HOST, LABEL_PID, LABEL_SLUG
from bottle.errors import EnvironmentProblem, UsageError
from bottle.manifests.agent import find_agent
from bottle.plan import GuestLayout, Plan, PlanContext, PlanFile, PlanSection, SidecarPlan
from bottle.plugins import Plugins
from bottle.sessions import PLAN, Inputs
from bottle.settings import Settings
from bottle.sidecar.service import SidecarService


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


def _one_each(found: list[tuple[str, str, object]], what: str) -> None:
    """Each key once: one that two plugins planned is an error naming both."""
    owners: dict[str, str] = {}
    for plugin, key, _ in found:
        if key in owners:
            raise EnvironmentProblem(f"{what} {key!r} is planned twice: by plugin {owners[key]!r} and by plugin "
                                     f"{plugin!r}. Disable one with BOTTLE_DISABLE_PLUGINS.")
        owners[key] = plugin


def _sections(plugins: Plugins, ctx: PlanContext) -> dict[str, PlanSection]:
    found = [(plugin, section.SECTION, section)
             for plugin, section in plugins.results_by_plugin("bottle_plan_section", ctx=ctx) if section is not None]
    _one_each(found, "The plan section")
    return {key: section for _, key, section in found}


def _services(plugins: Plugins, ctx: PlanContext) -> tuple[SidecarService, ...]:
    found = [(plugin, service.name, service)
             for plugin, result in plugins.results_by_plugin("bottle_sidecar_services", ctx=ctx)
             for service in (result or [])]
    _one_each(found, "The sidecar service")
    _one_each([(plugin, f"port {s.port}", s) for plugin, _, s in found if s.port is not None], "The sidecar")
    return tuple(service for _, _, service in found)


def build_plan(
    agent_ref: str,
    *,
    settings: Settings,
    plugins: Plugins,
    headless_prompt: str | None = None,
    backend: str | None = None,
    agent_args: tuple[str, ...] = (),
    repo: Path | None = None,
    slug: str | None = None,
    previous: Plan | None = None,
    publish: tuple[tuple[int, int], ...] = (),
) -> Plan:
    """The plan of a new bottle (named *slug*, else a new slug), or, with *previous* (its last run's plan), of
    the bottle *previous* was for going on: same slug and state dir, the profile and agent as they are now."""
    project_dir = paths.project_dir()
    config_dir = paths.config_dir()
    agent = find_agent(agent_ref, project_dir, config_dir)
    profile = plugins.load_profile(agent.bottle, config_dir, referrer=f"{agent.path}: field `bottle`: ")
    backend_name = backend or profile.backend or settings.backend
    plugins.backend(backend_name)  # unknown backend: fail now, not at launch
    if repo is not None:  # what works on a repository must be there, or --repo would mean nothing
        plugins.require("bottle_provision_git", "Option --repo")

    slug = previous.slug if previous is not None else slug or new_slug(agent.name)
    state_dir = paths.state_root() / slug
    guest = GuestLayout(
        user=settings.guest_user,
        uid=settings.guest_uid,
        home=settings.guest_home,
        workdir=settings.guest_workdir,
        prompt_path=f"{settings.guest_home}/.bottle/system-prompt.md",
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
        sidecar=SidecarPlan(image=settings.sidecar_image, audit_max_mb=settings.audit_max_mb),
        repo=repo,
        previous=previous,
    )
    hook = plugins.hook
    ctx = ctx.model_copy(update={"sections": _sections(plugins, ctx)})
    ctx = ctx.model_copy(update={"sidecar": ctx.sidecar.model_copy(update={"services": _services(plugins, ctx)})})
    command = hook.bottle_agent_command(ctx=ctx, headless_prompt=headless_prompt)
    if command is None:
        raise EnvironmentProblem(
            "No plugin says how to start the agent: none answers bottle_agent_command."
            f"{plugins.not_loaded() or ' Install one (see `bottle plugins`).'}"
        )
    skills = settings.guest_skills_dir or (command.skills_dir and f"{guest.home}/{command.skills_dir}")
    ctx = ctx.model_copy(update={"guest": guest.model_copy(update={"skills_dir": skills})})
    files: list[PlanFile] = [f for result in hook.bottle_plan_files(ctx=ctx) for f in (result or [])]
    plugin_args = [arg for result in hook.bottle_plan_agent_args(ctx=ctx) for arg in (result or [])]
    plugin_env = _merge_plugin_env(hook.bottle_plan_env(ctx=ctx))
    argv = [*command.argv, *plugin_args, *agent_args]
    # Plugins (the proxy settings, credential placeholders) override the agent's and the profile's env.
    env = {**command.env, **agent.env, **profile.env, **plugin_env, "HOME": guest.home}
    return Plan(
        slug=slug,
        agent=agent.name,
        agent_file=agent.path,
        profile=profile.name,
        profile_files=profile.files,
        notes=profile.notes + agent.notes,
        backend=backend_name,
        image=profile.image or settings.image,
        state_dir=state_dir,
        prompt_file=ctx.prompt_file,
        system_prompt=agent.prompt,
        guest=ctx.guest,
        resources=limits.resources(profile),
        runtime=profile.runtime or settings.runtime,
        files=tuple(files),
        sidecar=ctx.sidecar,
        sections=ctx.sections,
        agent_argv=tuple(argv),
        env=env,
        headless=headless_prompt is not None,
        resume=previous is not None,
        publish=publish,
        labels={
            LABEL_SLUG: slug,
            LABEL_AGENT: agent.name,
            LABEL_BACKEND: backend_name,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
        },
    )


def write_state(plan: Plan, inputs: Inputs | None = None) -> Path:
    """Create the bottle's state dir (0700) with the plan and the prompt file (0600); on a resume, the state
    dir is there (with the audit log, the disks) and the plan and prompt are this run's."""
    plan.state_dir.mkdir(parents=True, mode=0o700, exist_ok=plan.resume)
    plan.state_dir.chmod(0o700)  # mkdir's mode is masked by the umask
    plan.prompt_file.unlink(missing_ok=True)
    fd = os.open(plan.prompt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(plan.system_prompt)
    (plan.state_dir / PLAN).write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    if inputs is not None:
        inputs.write(plan.state_dir)
    return plan.state_dir
