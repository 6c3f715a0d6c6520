"""``bottle audit``: what a bottle's sidecar decided, from its audit log (kept after the bottle stops)."""

from typing import Optional

import typer

from bottle.cli.common import SLUG, print_json


def audit(
    slug: str = SLUG,
    as_json: bool = typer.Option(False, "--json", help="Print the events as JSON."),
    blocked: bool = typer.Option(False, "--blocked", help="Only what was blocked."),
    source: Optional[str] = typer.Option(None, "--source", help="Only events from this source (a sidecar service's name, operator, ...)."),
) -> None:
    """Show a bottle's audit log (kept after the bottle stops)."""
    from bottle import paths
    from bottle.display import terminal_safe
    from bottle.errors import UsageError
    from bottle_sidecar.audit import read_events
    from bottle.sidecar.runtime import audit_path

    path = audit_path(paths.state_root() / slug)
    if not path.is_file():
        raise UsageError(f"No audit log for bottle {slug!r} (looked for {path}).")
    events = [e for e in read_events(path, decision="blocked" if blocked else None) if source is None or e["source"] == source]
    if as_json:
        print_json(events)
        return
    from datetime import datetime

    for event in events:
        when = datetime.fromtimestamp(event["ts"]).isoformat(sep=" ", timespec="milliseconds")
        where = f"{event.get('method') or ''} {event.get('host') or ''}{':' + str(event['port']) if event.get('port') else ''}{event.get('path') or ''}"
        line = f"{when} {event['source']:9} {event['decision']:8} {where.strip()}  {event.get('reason') or ''}"
        print(terminal_safe(line))  # hosts, paths and reasons hold what the agent sent
