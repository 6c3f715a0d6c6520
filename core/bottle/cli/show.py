"""Human-readable rendering of a plan (rich, imported on use)."""

import shlex

from bottle.plan import Plan


def print_plan(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"plan for bottle {plan.slug}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("agent", f"{plan.agent} ({plan.agent_file})")
    table.add_row("profile", f"{plan.profile} ({', '.join(map(str, plan.profile_files)) or 'built-in default'})")
    for note in plan.notes:
        table.add_row("note", note)
    table.add_row("egress allow", ", ".join(plan.egress.allow) or "nothing")
    for c in plan.egress.credentials:
        value = f"{c.scheme} ${c.env}" if c.scheme else f"${c.env}"
        place = f"{c.host}{'' if c.port == 443 else f':{c.port}'}{c.path}"  # as an allow rule has it, and the prefix
        table.add_row("credential", f"{place}: {c.header}: {value} (the agent's {c.env} is a placeholder)")
    table.add_row("backend / image", f"{plan.backend} / {plan.image}")
    limits = plan.resources.model_dump()
    table.add_row("limits", " ".join(f"{name}={value or 'unlimited'}" for name, value in limits.items()))
    table.add_row("state dir", str(plan.state_dir))
    table.add_row("guest", f"user {plan.guest.user} (uid {plan.guest.uid}), workdir {plan.guest.workdir}")
    for f in plan.files:
        table.add_row(f"file ({f.provider})", f"{f.host_path} -> {f.guest_path}")
    table.add_row("claude", shlex.join(plan.claude_argv))
    for key, value in sorted(plan.env.items()):
        table.add_row("env", f"{key}={value}")
    console.print(table)
