"""The hooks plugins implement: bottle's only extension contract.

Every hook is documented here, where it is declared, and a test fails when a
hook has no documentation or no test exercising it.

Hooks are named after the moment they run:

* registration   -- :func:`bottle_addhooks`, :func:`bottle_register_backends`,
                    :func:`bottle_register_commands` (once per process, right after loading)
* planning       -- :func:`bottle_agent_command`, :func:`bottle_plan_files`,
                    :func:`bottle_plan_agent_args`, :func:`bottle_plan_env`
                    (no side effects; the result is the plan)
* provisioning   -- one hook per built-in provisioner, called in :data:`PROVISION_ORDER`,
                    then :func:`bottle_provision` for third-party provisioners
* lifecycle      -- :func:`bottle_started`, :func:`bottle_stopping`

Within one hook, pluggy's ``tryfirst``/``trylast`` order the implementations.
Every plugin module is imported for ``bottle --help``: import what is heavy
(pydantic models such as :class:`bottle.plan.PlanFile`, the Docker SDK) inside
the implementations, not at module level.
"""

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import typer

    from bottle.backend import Backend, Bottle
    from bottle.plan import AgentCommand, Plan, PlanContext, PlanFile

PROJECT = "bottle"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The fixed order in which the core calls the provisioner hooks. ``ca`` comes
#: first so every later step (git over HTTPS, say) already trusts the sidecar;
#: ``supervise`` comes last so that it sees everything the others set up.
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


# -- planning: no side effects, everything lands in the plan ----------------


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


# -- provisioning: the sandbox is running, plan files are in place ----------


@hookspec
def bottle_provision_ca(plan: "Plan", bottle: "Bottle") -> None:
    """Trust the sidecar's CA in the guest (certificate only, never its key). Runs first."""


@hookspec
def bottle_provision_git(plan: "Plan", bottle: "Bottle") -> None:
    """Set up git in the guest: identity, the working copy cloned through the gate."""


@hookspec
def bottle_provision_prompt(plan: "Plan", bottle: "Bottle") -> None:
    """Finish putting the agent's system prompt in place, beyond its plan file."""


@hookspec
def bottle_provision_skills(plan: "Plan", bottle: "Bottle") -> None:
    """Finish putting the agent's skills in place, beyond their plan files."""


@hookspec
def bottle_provision_supervise(plan: "Plan", bottle: "Bottle") -> None:
    """Connect the guest to the supervise channel. Runs after the other built-ins."""


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
