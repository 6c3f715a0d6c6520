"""The hooks plugins implement: bottle's only extension contract.

Every hook is documented here, where it is declared, and a test fails when a
hook has no documentation or no test exercising it.

Hooks are named after the moment they run:

* registration   -- :func:`bottle_register_backends`
* planning       -- :func:`bottle_plan_files`, :func:`bottle_plan_claude_args`,
                    :func:`bottle_plan_env` (no side effects; the result is the plan)
* provisioning   -- one hook per built-in provisioner, called in :data:`PROVISION_ORDER`,
                    then :func:`bottle_provision` for third-party provisioners
* lifecycle      -- :func:`bottle_started`, :func:`bottle_stopping`

Within one hook, pluggy's ``tryfirst``/``trylast`` order the implementations.
"""

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from bottle.backend import Backend, Bottle
    from bottle.plan import Plan, PlanContext, PlanFile

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


# -- registration -----------------------------------------------------------


@hookspec
def bottle_register_backends(register: "Callable[[Backend], None]") -> None:
    """Register backends by calling ``register(backend)`` once per backend.

    A backend is a :class:`bottle.backend.Backend`; its ``name`` is what
    ``--backend`` and the profile's ``backend`` select, and its
    ``availability()`` says why it cannot run here (``bottle doctor``).
    Registering two backends with the same name is an error naming both plugins.
    """


# -- planning: no side effects, everything lands in the plan ----------------


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
def bottle_plan_claude_args(ctx: "PlanContext") -> "list[str] | None":
    """Return arguments to add to the ``claude`` command line.

    They come after bottle's own arguments and before the user's
    ``-- CLAUDE_ARGS``. Never put a secret here: argv is visible to every
    process in the guest.
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
