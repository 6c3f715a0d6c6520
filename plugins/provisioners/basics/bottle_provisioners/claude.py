"""Provisioner ``claude``: Claude Code's own state, so a session opens straight to work.

A fresh Claude Code stops an interactive session four times before the
prompt: the first-run onboarding (which also probes the real API directly,
whatever ``ANTHROPIC_BASE_URL`` says), a question whether to use the API key
found in the environment, whether to trust the working directory, and whether
to accept bypassing permissions. In a bottle all answers are known: onboarding
is moot, the only key the agent holds is the sidecar's placeholder (approved
here by its last 20 characters, as Claude Code records approvals), the
workdir is the bottle's own, and the bottle is the boundary. A subscription
token (``CLAUDE_CODE_OAUTH_TOKEN``, its placeholder) needs no answer: Claude
Code asks nothing about it (tests/integration/test_subscription_login.py).

It also says how Claude Code starts (``bottle_agent_command``), and what the
profile ``default`` is when the user wrote none (``bottle_builtin_profile``):
the core knows no agent by name.
"""

import json
import os

from bottle import hookimpl

NAME = "claude"
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"
#: Quiet Claude Code: no telemetry, no self-update, no traffic but the API.
AGENT_BASE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


ANTHROPIC_API_HOST = "api.anthropic.com"
#: What the built-in ``default`` profile injects into the Anthropic API's
#: requests: the first of these whose variable is set on the host (as the egress
#: plugin's ``[[credentials]]`` routes). Claude Code sends a subscription token
#: (``claude setup-token``) found in its own ``CLAUDE_CODE_OAUTH_TOKEN`` as a bearer token.
BUILTIN_CREDENTIALS = (
    {"host": ANTHROPIC_API_HOST, "header": "x-api-key", "env": "ANTHROPIC_API_KEY"},
    {"host": ANTHROPIC_API_HOST, "header": "authorization", "scheme": "Bearer", "env": "CLAUDE_CODE_OAUTH_TOKEN"},
)


@hookimpl
def bottle_builtin_profile(path):
    """The profile ``default`` when *path* (its file) does not exist: Claude Code, reaching
    the Anthropic API with the credential the user has, and nothing else.

    Which credential is decided now, at plan time, so that a run that could
    only end in Claude Code's "Not logged in" stops before anything starts.
    """
    from bottle.errors import UsageError
    from bottle.manifests.tables import BuiltinProfile

    names = [route["env"] for route in BUILTIN_CREDENTIALS]
    found = [route for route in BUILTIN_CREDENTIALS if os.environ.get(route["env"])]
    if not found:
        raise UsageError(
            f"No credential for the Anthropic API: the built-in bottle profile 'default' (there is no {path}) "
            f"injects {names[0]} (an API key) or {names[1]} (a Claude subscription token, made by "
            f"`claude setup-token`), and neither is set in this environment. Set one, or write {path} "
            "with a `[[credentials]]` route for the credential to use."
        )
    chosen, *unused = found
    notes = [f"built-in profile 'default': {ANTHROPIC_API_HOST} with {chosen['env']}"]
    notes += [f"{route['env']} is set too and not used ({chosen['env']} comes first)" for route in unused]
    return BuiltinProfile(data={"egress": {"allow": [ANTHROPIC_API_HOST]}, "credentials": [chosen]},
                          notes=tuple(notes))


@hookimpl
def bottle_agent_command(ctx, headless_prompt):
    from bottle.plan import AgentCommand  # pydantic: not for `bottle --help`

    argv = ["claude"]
    if headless_prompt is not None:
        argv += ["-p", headless_prompt]
    # The bottle is the boundary: inside it the agent may do anything.
    argv.append("--dangerously-skip-permissions")
    if ctx.agent.model:
        argv += ["--model", ctx.agent.model]
    if ctx.resume:  # the conversation of the bottle's last run (its home holds Claude Code's sessions)
        argv.append("--continue")
    return AgentCommand(argv=tuple(argv), env=AGENT_BASE_ENV, skills_dir=".claude/skills")


@hookimpl
def bottle_plan_files(ctx):
    from bottle.plan import PlanFile  # pydantic: not for `bottle --help`

    # The egress plugin's credential routes, when it is there: the agent holds their placeholders.
    routes = getattr(ctx.sections.get("egress"), "credentials", ())
    placeholders = [route.placeholder for route in routes if route.env == API_KEY_VARIABLE]
    state = {
        "hasCompletedOnboarding": True,
        # bottle always runs it with --dangerously-skip-permissions: the bottle is the boundary.
        "bypassPermissionsModeAccepted": True,
        # The working directory is the bottle's own: trusting it is the point.
        "projects": {ctx.guest.workdir: {"hasTrustDialogAccepted": True}},
        "customApiKeyResponses": {"approved": [key[-20:] for key in placeholders], "rejected": []},
    }
    return [PlanFile(content=json.dumps(state, indent=2), guest_path=f"{ctx.guest.home}/.claude.json", provider=NAME)]
