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

It also says how Claude Code starts (``bottle_agent_command``): the core
knows no agent by name.
"""

import json

from bottle import hookimpl

NAME = "claude"
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"
#: Quiet Claude Code: no telemetry, no self-update, no traffic but the API.
AGENT_BASE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


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
    return AgentCommand(argv=tuple(argv), env=AGENT_BASE_ENV)


@hookimpl
def bottle_plan_files(ctx):
    from bottle.plan import PlanFile  # pydantic: not for `bottle --help`

    placeholders = [c.placeholder for c in ctx.egress.credentials if c.env == API_KEY_VARIABLE]
    state = {
        "hasCompletedOnboarding": True,
        # bottle always runs it with --dangerously-skip-permissions: the bottle is the boundary.
        "bypassPermissionsModeAccepted": True,
        # The working directory is the bottle's own: trusting it is the point.
        "projects": {ctx.guest.workdir: {"hasTrustDialogAccepted": True}},
        "customApiKeyResponses": {"approved": [key[-20:] for key in placeholders], "rejected": []},
    }
    return [PlanFile(content=json.dumps(state, indent=2), guest_path=f"{ctx.guest.home}/.claude.json", provider=NAME)]
