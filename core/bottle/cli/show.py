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
    for service in plan.sidecar.services:
        where = f" on {plan.sidecar.url(service.port)}" if service.port else ""
        table.add_row("sidecar", f"{service.name}{where}")
    for section in plan.sections.values():  # no secret in a section: names and placeholders only
        for label, text in section.describe():
            table.add_row(label, text)
    table.add_row("backend / image", f"{plan.backend} / {plan.image}")
    limits = plan.resources.model_dump()
    table.add_row("limits", " ".join(f"{name}={value or 'unlimited'}" for name, value in limits.items()))
    table.add_row("state dir", str(plan.state_dir))
    table.add_row("guest", f"user {plan.guest.user} (uid {plan.guest.uid}), workdir {plan.guest.workdir}")
    for f in plan.files:
        table.add_row(f"file ({f.provider})", f"{f.host_path} -> {f.guest_path}")
    table.add_row("agent command", shlex.join(plan.agent_argv))
    for key, value in sorted(plan.env.items()):
        table.add_row("env", f"{key}={value}")
    console.print(table)
