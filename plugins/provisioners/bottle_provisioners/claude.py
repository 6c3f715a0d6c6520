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
"""

import json

from bottle import hookimpl
from bottle.plan import PlanFile

NAME = "claude"
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


@hookimpl
def bottle_plan_files(ctx):
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
