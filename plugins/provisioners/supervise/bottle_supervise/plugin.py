"""Provisioner ``supervise``: the agent can ask, and its tool calls are on the record.

Claude Code gets the supervise server as an MCP server (``--mcp-config``) and
hooks (PreToolUse, PostToolUse, Stop) that post every event to the server,
which audits it and may deny a PreToolUse. Both files are Claude Code's
*managed* settings under ``/etc``, owned by root: the agent user can neither
edit nor remove them, and its own settings can neither disable nor override
them.

The hooks run as the agent, so nothing they use may be the agent's to steer:
each runs ``HOOK_CLIENT``, a root-owned script, under ``/usr/bin/env -i`` (no
inherited variables: no proxy, no ``CURL_HOME``, no ``PATH``), which runs
``/usr/bin/curl -q`` (no ``.curlrc``) against the server's address, given in
the managed settings. A PreToolUse hook fails closed: a server that does not
answer, or answers anything but an allow or a deny, blocks the call (exit 2).
The one thing ``env -i`` comes too late for is the ``/bin/sh`` Claude Code
starts the command with: the managed settings pin the dynamic loader's
variables, which a settings file of the project or the user could otherwise
set to load code into it.

This makes the hooks an audit trail and a guard against honest mistakes, not
a proof: the hook processes are the agent's, which can kill them, and
anything the client posts, the agent can post too (the server labels hook
events as the guest's). The sandbox and the sidecar are the boundary.

The same plugin is the operator's side: it publishes the hook through which
an approval is carried out (``bottle_supervise.hookspecs``) and adds
``bottle proposals``, ``bottle answer`` and ``bottle supervise``, whose code
is in the core until supervise has a distribution of its own; so blocking
``supervise`` blocks all of it.
"""

import json

from bottle import hookimpl
from bottle_supervise import hookspecs as supervise_hookspecs
from bottle_supervise import commands
from bottle.errors import EnvironmentProblem
from bottle_supervise.image_part import bottle_sidecar_image_parts  # noqa: F401 -- the server's image part

DENY_FILE = "/run/bottle/supervise-deny.json"
READY = "bottle-supervise: listening"
MANAGED_SETTINGS = "/etc/claude-code/managed-settings.json"
MCP_CONFIG = "/etc/claude-code/bottle-mcp.json"
HOOK_CLIENT = "/usr/local/lib/bottle/supervise-hook"
#: Loader variables Claude Code's environment could hold (from a settings
#: file's ``env``) when it starts a hook's shell; empty, they load nothing.
PINNED_ENV = {"LD_PRELOAD": "", "LD_LIBRARY_PATH": "", "LD_AUDIT": ""}
#: The hook client. Its arguments are the server's URL and the event; Claude
#: Code's hook input is its stdin. curl's ``-q`` must come first to skip
#: ``.curlrc``; ``--max-time`` stays below the hook's timeout, so the client,
#: not Claude Code's timer (which would let the call through), ends a wait.
HOOK_SCRIPT = r"""#!/bin/sh
# bottle's supervise hook client (bottle_supervise.plugin): run as
#   /usr/bin/env -i /usr/local/lib/bottle/supervise-hook URL EVENT
url=$1 event=$2
answer=$(/usr/bin/curl -q --silent --show-error --fail --noproxy '*' --max-time 30 \
    --header 'content-type: application/json' --data-binary @- "$url/hooks/$event")
status=$?
if [ "$event" != pre-tool-use ]; then
    [ "$status" -eq 0 ] && exit 0
    echo "bottle: the supervise server did not record this $event event (curl exit $status)" >&2
    exit 1
fi
if [ "$status" -eq 0 ]; then
    case "$answer" in
    '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow",'* | \
    '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny",'*)
        printf '%s\n' "$answer"
        exit 0 ;;
    esac
fi
echo "bottle: the supervise server did not answer (curl exit $status); the tool call is blocked" >&2
exit 2
"""


def _hook(url: str, event: str) -> dict:
    command = f"/usr/bin/env -i {HOOK_CLIENT} {url} {event}"
    if event == "pre-tool-use":  # the client killed by a signal blocks the call too
        command += " || exit 2"
    return {"type": "command", "timeout": 60, "command": command}


def settings(url: str) -> dict:
    return {
        "env": PINNED_ENV,
        "hooks": {
            "PreToolUse": [{"matcher": "*", "hooks": [_hook(url, "pre-tool-use")]}],
            "PostToolUse": [{"matcher": "*", "hooks": [_hook(url, "post-tool-use")]}],
            "Stop": [{"hooks": [_hook(url, "stop")]}],
        },
    }


@hookimpl
def bottle_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(supervise_hookspecs)


@hookimpl
def bottle_register_commands(app):
    app.command("proposals")(commands.proposals)
    app.command("answer")(commands.answer)
    app.command("supervise")(commands.supervise)


@hookimpl
def bottle_register_profile_tables(register):
    from bottle_supervise.tables import TABLES  # pydantic: not for `bottle --help`

    register(*TABLES)


@hookimpl
def bottle_plan_section(ctx):
    from bottle_supervise.section import SERVER_PORT, SupervisePlan

    supervise = ctx.profile.table("supervise")
    if not supervise.enabled:
        return None
    return SupervisePlan(answer_timeout=supervise.answer_timeout, deny=supervise.deny,
                         url=ctx.sidecar.url(SERVER_PORT))


@hookimpl
def bottle_sidecar_services(ctx):
    from bottle.sidecar.service import AUDIT, SidecarService
    from bottle_supervise.section import QUEUE_FILE, QUEUE_MOUNT, SERVER_PORT, SupervisePlan

    supervise = ctx.section(SupervisePlan)
    if supervise is None:
        return None
    argv = (
        "python", "-m", "bottle_supervise_sidecar.server", "--listen-host", "0.0.0.0", "--listen-port", str(SERVER_PORT),
        "--queue", f"{QUEUE_MOUNT}/{QUEUE_FILE}", "--audit", AUDIT, "--bottle", ctx.slug, "--agent", ctx.agent.name,
        "--answer-timeout", str(supervise.answer_timeout), "--deny", DENY_FILE,
    )
    return [SidecarService(name="supervise", argv=argv, ready=READY, port=SERVER_PORT, part="supervise")]


@hookimpl
def bottle_sidecar_prepare(plan, sidecar):
    from bottle_supervise.section import QUEUE_MOUNT, SupervisePlan, prepare_queue

    supervise = plan.section(SupervisePlan)
    if supervise is None:
        return
    sidecar.tmpfs_file(DENY_FILE, json.dumps(list(supervise.deny)), 0o644)
    sidecar.mount(prepare_queue(plan.state_dir.parent), QUEUE_MOUNT)


@hookimpl
def bottle_plan_agent_args(ctx):
    from bottle_supervise.section import SupervisePlan

    return ["--mcp-config", MCP_CONFIG] if ctx.section(SupervisePlan) else []


@hookimpl
def bottle_plan_env(ctx):
    from bottle_supervise.section import SupervisePlan

    supervise = ctx.section(SupervisePlan)
    if supervise is None:
        return {}
    return {
        # An MCP call waits for the operator: let it outlast the answer timeout.
        "MCP_TOOL_TIMEOUT": str((supervise.answer_timeout + 60) * 1000),
        # Offer the supervise tools with every request instead of deferring
        # them behind a tool search: an agent at a closed door must see them.
        "ENABLE_TOOL_SEARCH": "false",
    }


@hookimpl
def bottle_provision_supervise(plan, bottle):
    from bottle_supervise.section import SupervisePlan

    supervise = plan.section(SupervisePlan)
    if supervise is None:
        return
    mcp = {"mcpServers": {"supervise": {"type": "http", "url": f"{supervise.url}/mcp"}}}
    hook_dir = HOOK_CLIENT.rsplit("/", 1)[0]
    script = (
        "for tool in /usr/bin/env /usr/bin/curl; do [ -x $tool ] || "
        "{ echo \"the image has no $tool, which the supervise hooks run\" >&2; exit 1; }; done"
        f" && install -d -o root -g root -m 0755 /etc/claude-code {hook_dir}"
        f' && printf %s "$HOOK" > {HOOK_CLIENT} && chown root:root {HOOK_CLIENT} && chmod 0755 {HOOK_CLIENT}'
        f' && printf %s "$SETTINGS" > {MANAGED_SETTINGS} && printf %s "$MCP" > {MCP_CONFIG}'
        f" && chmod 0644 {MANAGED_SETTINGS} {MCP_CONFIG}"
    )
    result = bottle.exec(
        ["sh", "-c", script],
        user="root",
        env={"SETTINGS": json.dumps(settings(supervise.url)), "MCP": json.dumps(mcp), "HOOK": HOOK_SCRIPT},
    )
    if result.exit_code != 0:
        raise EnvironmentProblem(f"Could not install the supervise settings: {result.stderr.decode(errors='replace')}")


@hookimpl
def bottle_describe(plan):
    """``bottle ls``'s column: how many of the bottle's proposals wait for an answer."""
    from bottle_supervise.desk import list_proposals
    from bottle_supervise.section import SupervisePlan

    if plan.section(SupervisePlan) is None:
        return None
    pending = [proposal for proposal in list_proposals(plan.state_dir.parent) if proposal["bottle"] == plan.slug]
    return {"proposals": str(len(pending))}
