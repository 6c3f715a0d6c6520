"""Provisioner ``prompt``: the agent's system prompt reaches Claude Code as a file.

The prompt is always copied in (so the guest holds what the plan says), but
``--append-system-prompt-file`` is only passed when there is something to
append: an empty prompt must not change Claude Code's behaviour.
"""

from bottle import hookimpl

NAME = "prompt"


@hookimpl
def bottle_plan_files(ctx):
    from bottle.plan import PlanFile  # pydantic: not for `bottle --help`

    return [PlanFile(host_path=ctx.prompt_file, guest_path=ctx.guest.prompt_path, provider=NAME)]


@hookimpl
def bottle_plan_agent_args(ctx):
    if not ctx.agent.prompt.strip():
        return []
    return ["--append-system-prompt-file", ctx.guest.prompt_path]
