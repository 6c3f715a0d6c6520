"""Provisioner ``supervise``: the agent can ask, and its tool calls are on the record.

Claude Code gets the supervise server as an MCP server (``--mcp-config``) and
hooks (PreToolUse, PostToolUse, Stop) that post every event to the server,
which audits it and may deny a PreToolUse. Both files are Claude Code's
*managed* settings under ``/etc``, owned by root: the agent user can neither
edit nor remove them. A PreToolUse hook that cannot reach the server fails
closed (exit 2 blocks the call).
"""

import json

from bottle import hookimpl
from bottle.errors import EnvironmentProblem

MANAGED_SETTINGS = "/etc/claude-code/managed-settings.json"
MCP_CONFIG = "/etc/claude-code/bottle-mcp.json"
CURL = "curl -sS --fail --noproxy '*' --max-time 30 -H 'content-type: application/json' --data-binary @-"


def _hook(url: str, event: str, on_failure: str) -> dict:
    return {"type": "command", "timeout": 60, "command": f"{CURL} {url}/hooks/{event} || {on_failure}"}


def settings(url: str) -> dict:
    blocked = "{ echo 'bottle: the supervise server did not answer; the tool call is blocked' >&2; exit 2; }"
    return {
        "hooks": {
            "PreToolUse": [{"matcher": "*", "hooks": [_hook(url, "pre-tool-use", blocked)]}],
            "PostToolUse": [{"matcher": "*", "hooks": [_hook(url, "post-tool-use", "exit 1")]}],
            "Stop": [{"hooks": [_hook(url, "stop", "exit 1")]}],
        }
    }


@hookimpl
def bottle_plan_claude_args(ctx):
    return ["--mcp-config", MCP_CONFIG] if ctx.profile.supervise.enabled else []


@hookimpl
def bottle_plan_env(ctx):
    if not ctx.profile.supervise.enabled:
        return {}
    return {
        # An MCP call waits for the operator: let it outlast the answer timeout.
        "MCP_TOOL_TIMEOUT": str((ctx.profile.supervise.answer_timeout + 60) * 1000),
        # Offer the supervise tools with every request instead of deferring
        # them behind a tool search: an agent at a closed door must see them.
        "ENABLE_TOOL_SEARCH": "false",
    }


@hookimpl
def bottle_provision_supervise(plan, bottle):
    if plan.supervise is None:
        return
    mcp = {"mcpServers": {"supervise": {"type": "http", "url": f"{plan.supervise.url}/mcp"}}}
    script = (
        'mkdir -p /etc/claude-code && printf %s "$SETTINGS" > ' + MANAGED_SETTINGS
        + ' && printf %s "$MCP" > ' + MCP_CONFIG
        + f" && chmod 0644 {MANAGED_SETTINGS} {MCP_CONFIG}"
    )
    result = bottle.exec(
        ["sh", "-c", script],
        user="root",
        env={"SETTINGS": json.dumps(settings(plan.supervise.url)), "MCP": json.dumps(mcp)},
    )
    if result.exit_code != 0:
        raise EnvironmentProblem(f"Could not install the supervise settings: {result.stderr.decode(errors='replace')}")
