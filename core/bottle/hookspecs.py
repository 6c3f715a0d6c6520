"""The hooks plugins implement: bottle's only extension contract.

Every hook is documented here, where it is declared, and a test fails when a
hook has no documentation or no test exercising it.

Hooks are named after the moment they run:

* registration   -- :func:`bottle_addhooks`, :func:`bottle_register_backends`,
                    :func:`bottle_register_commands`, :func:`bottle_register_profile_tables`,
                    :func:`bottle_register_settings`,
                    :func:`bottle_builtin_profile`, :func:`bottle_sidecar_image_parts`
                    (once per process, right after loading)
* planning       -- :func:`bottle_plan_section` first, then :func:`bottle_agent_command`,
                    :func:`bottle_plan_files`, :func:`bottle_plan_agent_args`, :func:`bottle_plan_env`,
                    :func:`bottle_sidecar_services` (no side effects; the result is the plan)
* launch         -- :func:`bottle_sidecar_prepare` (before the sidecar starts)
* provisioning   -- one hook per built-in provisioner, called in :data:`PROVISION_ORDER`,
                    then :func:`bottle_provision` for third-party provisioners
* lifecycle      -- :func:`bottle_started`, :func:`bottle_stopping`, :func:`bottle_run_summary`
* stopped bottles -- :func:`bottle_describe` (``bottle ls``), :func:`bottle_unsaved_work` (``rm``, ``prune``)
* checks         -- :func:`bottle_doctor`

Within one hook, pluggy's ``tryfirst``/``trylast`` order the implementations.
Every plugin module is imported for ``bottle --help``: import what is heavy
(pydantic models such as :class:`bottle.plan.PlanFile`, the Docker SDK) inside
the implementations, not at module level.
"""

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import typer

    from pathlib import Path

    from pydantic import BaseModel

    from bottle.backend import Backend, Bottle
    from bottle.doctor import DoctorSection
    from bottle.settings import Settings
    from bottle.manifests.tables import BuiltinProfile, ProfileTable
    from bottle.plan import AgentCommand, Plan, PlanContext, PlanFile, PlanSection
    from bottle.sidecar.service import ImagePart, SidecarService, SidecarSetup

PROJECT = "bottle"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The fixed order in which the core calls the provisioner hooks. ``ca`` comes
#: first so every later step (git over HTTPS, say) already trusts the sidecar;
#: the operator's channel comes last so that it sees everything the others set up.
PROVISION_ORDER = (
    "bottle_provision_ca",
    "bottle_provision_git",
    "bottle_provision_prompt",
    "bottle_provision_skills",
    "bottle_provision_supervise",
    "bottle_provision",
)


# -- registration: once per process, right after loading, before any command runs


@hookspec(historic=True)
def bottle_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Publish hooks of your own for other plugins to implement (pytest's ``pytest_addhooks``).

    Call ``pluginmanager.add_hookspecs(module)`` with a module of
    ``@hookspec`` functions (``bottle.hookspecs.hookspec``). This is how two
    plugins work together without importing each other: the one that asks
    declares the hook, the one that answers implements it. Implement another
    plugin's hook with ``@hookimpl(optionalhook=True)``, so that yours still
    loads when that plugin is not installed or is disabled; a hook nobody
    declares, implemented without it, is reported as a failure of your plugin
    (a misspelt name, most often). Historic: a plugin registered later is
    called on registration, so the order plugins load in does not matter.
    """


@hookspec
def bottle_register_backends(register: "Callable[[Backend], None]") -> None:
    """Register backends by calling ``register(backend)`` once per backend.

    A backend is a :class:`bottle.backend.Backend`; its ``name`` is what
    ``--backend`` and the profile's ``backend`` select, and its
    ``availability()`` says why it cannot run here (``bottle doctor``).
    Registering two backends with the same name is an error naming both plugins.
    """


@hookspec
def bottle_register_commands(app: "typer.Typer") -> None:
    """Add commands or sub-apps to ``bottle`` (``app.command``, ``app.add_typer``), as llm's ``register_commands``.

    The core's own commands come first, registered the same way by an
    essential plugin that cannot be disabled. A command or group name that
    another plugin already registered is an error naming both plugins. Every
    plugin is imported and asked for ``bottle --help``, so import heavy
    modules inside the command, not at module level nor here. A command finds
    this process's plugins with ``bottle.cli.common.loaded_plugins()``.
    """


@hookspec
def bottle_register_profile_tables(register: "Callable[..., None]") -> None:
    """Declare the top-level profile tables your plugin reads: ``register(table, ...)``.

    A :class:`bottle.manifests.tables.ProfileTable` names the key (``git``
    for ``[git]``; ``many`` for ``[[credentials]]``), the pydantic model
    (``extra="forbid"``: an unknown field is an error naming the file) and how
    the layers of ``extends`` merge. The planning hooks read the merged value
    with ``ctx.profile.table(key)``. A key two plugins register is an error
    naming both; a key no loaded plugin registers is an unknown field.
    """


@hookspec
def bottle_register_settings(register: "Callable[[type[BaseModel]], None]") -> None:
    """Add keys to bottle's settings by calling ``register(model)`` with a pydantic model of your fields.

    They are read as the core's are (flags > ``BOTTLE_*`` variables >
    config.toml > defaults) and appear on the settings object every command
    gets; the model's validators run too. A key another plugin or the core
    already has is an error naming both; a key no loaded plugin has is an
    unknown field of the config file.
    """


@hookspec(firstresult=True)
def bottle_builtin_profile(path: "Path") -> "BuiltinProfile | None":
    """Return the profile ``default`` when its file, *path*, does not exist, or None to leave it to another plugin.

    The first plugin to answer decides (the agent's plugin, which knows what
    its agent must reach). Its ``data`` is validated as a file would be, with
    the tables plugins registered. Raise :class:`bottle.errors.UsageError`
    when no such profile can work here (no credential set, say), saying what
    to set or write. With no plugin answering, a missing ``default`` is an
    error like any missing profile.
    """


@hookspec
def bottle_sidecar_image_parts() -> "list[ImagePart] | None":
    """Return what your sidecar services need in the sidecar image: :class:`bottle.sidecar.service.ImagePart`.

    ``bottle image build`` unions every loaded plugin's parts with the
    kit's; ``bottle run`` refuses a sidecar image that lacks the part of a
    planned service, saying to rebuild it.
    """


# -- planning: no side effects, everything lands in the plan ----------------


@hookspec
def bottle_plan_section(ctx: "PlanContext") -> "PlanSection | None":
    """Return your part of the plan, decided from your profile table(s), or None when this bottle has none.

    A :class:`bottle.plan.PlanSection` subclass with its ``SECTION`` key; the
    plan holds it under that key (``plan.section(MySection)``) and
    ``bottle run --dry-run --json`` shows it. This runs before every other
    planning hook, with ``ctx.sections`` empty; those hooks see every
    plugin's section. Raise :class:`bottle.errors.UsageError` for bad input.
    """


@hookspec(firstresult=True)
def bottle_agent_command(ctx: "PlanContext", headless_prompt: "str | None") -> "AgentCommand | None":
    """Return the agent's command line and base environment, or None when another plugin should answer.

    The first plugin that returns an :class:`bottle.plan.AgentCommand` decides
    (``firstresult``; ``tryfirst`` to take over from the built-in). Its
    ``argv`` starts the agent, interactive or, when *headless_prompt* is not
    None, running that prompt to the end; the core appends the arguments of
    :func:`bottle_plan_agent_args` and then the user's own (after ``--``).
    Its ``env`` is the lowest layer of the agent's environment: the agent's,
    the profile's and the plugins' ``env`` override it. With no plugin
    answering, ``bottle run`` refuses. Never put a secret here.
    """


@hookspec
def bottle_plan_files(ctx: "PlanContext") -> "list[PlanFile] | None":
    """Return host files or directories to copy into the guest before provisioning.

    The core copies every file of the plan in one tar stream, owned by the
    guest user, right after the sandbox starts and before any provision hook
    runs. A provisioner that only needs files in place (prompt, skills) needs
    nothing more. Raise :class:`bottle.errors.UsageError` for bad input: it is
    reported before anything starts.
    """


@hookspec
def bottle_plan_agent_args(ctx: "PlanContext") -> "list[str] | None":
    """Return arguments to add to the agent's command line.

    They come after the command of :func:`bottle_agent_command` and before the
    user's own (``bottle run AGENT -- ARGS``). Never put a secret here: argv is
    visible to every process in the guest.
    """


@hookspec
def bottle_plan_env(ctx: "PlanContext") -> "dict[str, str] | None":
    """Return environment variables for the agent.

    They override the agent's and the profile's ``env`` (a plugin's setting is
    what keeps the boundary, e.g. the proxy address). Two plugins setting the
    same variable to different values is an error. Never put a secret here.
    """


@hookspec
def bottle_sidecar_services(ctx: "PlanContext") -> "list[SidecarService] | None":
    """Return the daemons to run in this bottle's sidecar: :class:`bottle.sidecar.service.SidecarService`.

    Every plugin's services run side by side in one sidecar and start
    together; the guest reaches one at ``http://{ctx.sidecar.hostname}:{port}``.
    A name two plugins give is an error naming both. No secret here: a service
    gets its secrets through :func:`bottle_sidecar_prepare`.
    """


# -- launch: side effects allowed; the state dir exists, the sidecar has not started


@hookspec
def bottle_sidecar_prepare(plan: "Plan", sidecar: "SidecarSetup") -> None:
    """Put your services' launch-time material in place on *sidecar*, a :class:`bottle.sidecar.service.SidecarSetup`.

    ``sidecar.secret(ref)`` reads a secret on the host now, for the sidecar
    alone; ``sidecar.tmpfs_file`` writes a file into the sidecar's tmpfs;
    ``sidecar.state_file`` writes into the bottle's state dir (kept after the
    bottle); ``sidecar.mount`` bind-mounts a host path; ``sidecar.callback``
    stops a helper at teardown. Only for the bottle's own services: return at
    once when *plan* has no section of yours. Never print a secret.
    """


# -- provisioning: the sandbox is running, plan files are in place ----------


@hookspec
def bottle_provision_ca(plan: "Plan", bottle: "Bottle") -> None:
    """Trust the sidecar's CA in the guest (certificate only, never its key). Runs first."""


@hookspec
def bottle_provision_git(plan: "Plan", bottle: "Bottle") -> None:
    """Set up git in the guest: identity, the working copy cloned through the sidecar."""


@hookspec
def bottle_provision_prompt(plan: "Plan", bottle: "Bottle") -> None:
    """Finish putting the agent's system prompt in place, beyond its plan file."""


@hookspec
def bottle_provision_skills(plan: "Plan", bottle: "Bottle") -> None:
    """Finish putting the agent's skills in place, beyond their plan files."""


@hookspec
def bottle_provision_supervise(plan: "Plan", bottle: "Bottle") -> None:
    """Connect the guest to the operator's channel (ask, report, deny). Runs after the other built-ins."""


@hookspec
def bottle_provision(plan: "Plan", bottle: "Bottle") -> None:
    """Third-party provisioning; runs after every built-in provisioner.

    Talk to the sandbox only through ``bottle`` (exec, put files). An
    exception here stops the launch and tears everything down.
    """


# -- lifecycle observers ----------------------------------------------------


@hookspec
def bottle_started(plan: "Plan", bottle: "Bottle") -> None:
    """The bottle is provisioned; the agent is about to start."""


@hookspec
def bottle_stopping(plan: "Plan", bottle: "Bottle") -> None:
    """The agent has exited (or launch failed after start); teardown follows.

    Exceptions here are reported and do not stop the teardown.
    """


@hookspec
def bottle_doctor(settings: "Settings") -> "DoctorSection | None":
    """Report what your plugin needs on this machine, for ``bottle doctor``: a :class:`bottle.doctor.DoctorSection`.

    Its ``data`` goes under its ``key`` in ``bottle doctor --json``; its
    ``lines`` are printed as they are (each may quote a path or a tag, never
    a secret). *settings* are this run's, the plugins' keys included.
    """


@hookspec
def bottle_run_summary(plan: "Plan", events: "list[dict]") -> "list[str] | None":
    """Return lines for the user once the bottle is gone: what your capability did (branches pushed, say).

    *events* are this run's part of the bottle's audit log, oldest first (``bottle_sidecar.audit.read_events``).
    Whatever came from the agent (a ref name, a host) must go through
    :func:`bottle.display.terminal_safe`: these lines reach the terminal.
    """


@hookspec
def bottle_describe(plan: "Plan") -> "dict[str, str] | None":
    """Return columns of ``bottle ls`` for the bottle of *plan* (its last run's), running or stopped: short
    values under short lowercase names (``{"branch": "bottle/x-1a2b3c", "unpushed": "2"}``), read from the
    bottle's state dir, never from the guest. Every value goes through :func:`bottle.display.terminal_safe`
    before it is shown; ``bottle ls --json`` has them as they are.
    """


@hookspec
def bottle_unsaved_work(plan: "Plan") -> "list[str] | None":
    """Return what of the agent's work only the bottle of *plan* holds, one line each (``"2 commits upstream
    refused: ..."``), or nothing when it is all saved elsewhere: ``bottle rm`` refuses to delete a bottle
    that holds any unless ``--force``, and ``bottle prune`` leaves it. Say so too when you cannot know
    (the run was killed before your ``bottle_stopping`` could look): unknown is unsaved.
    """
