"""``bottle proposals``, ``bottle answer`` and ``bottle supervise``: answer what bottled agents ask for."""

from typing import Optional

import typer


def proposals(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the pending proposals of every running bottle: hosts, tools and help the agents ask for."""
    import sys

    from bottle import paths
    from bottle.cli.common import print_json
    from bottle.cli.manage import all_bottles
    from bottle.display import terminal_safe
    from bottle_supervise.desk import age, list_proposals

    # The queue is a file on the host, readable without an engine; but a
    # proposal waits for an answer only while its bottle exists (a sidecar that
    # died never expired its own), so the backends are asked which bottles run,
    # and this fails like `bottle ls` when none answers.
    existing = {info.slug for _, info in all_bottles() if info.status != "stopped"}
    queued = list_proposals(paths.state_root())
    pending = [proposal for proposal in queued if proposal["bottle"] in existing]
    if len(pending) < len(queued):
        print(f"bottle: {len(queued) - len(pending)} pending proposal(s) of bottles no backend lists are not shown: "
              "nobody waits for the answers of a bottle that is gone.", file=sys.stderr)
    if as_json:
        print_json(pending)
        return
    if not pending:
        print("no pending proposals")
        return
    print(f"{'ID':>5} {'AGE':>5} {'BOTTLE':28} {'AGENT':16} {'KIND':10} WHAT  (REASON)")
    for proposal in pending:  # one line each, whatever the agent wrote
        reason = f"  ({proposal['reason']})" if proposal["reason"] else ""
        print(terminal_safe(f"{proposal['id']:>5} {age(proposal['created']):>5} {proposal['bottle']:28} "
                            f"{proposal['agent']:16} {proposal['kind']:10} {proposal['what']}{reason}"))


def answer(
    proposal_id: int = typer.Argument(..., metavar="ID", help="The proposal's id (see `bottle proposals`)."),
    approve: bool = typer.Option(False, "--approve", help="Grant it (an egress request: allow the host now)."),
    reject: bool = typer.Option(False, "--reject", help="Refuse it."),
    note: str = typer.Option("", "--note", help="A note for the agent, returned with the answer."),
    host: Optional[str] = typer.Option(None, "--host", help="With --approve on an egress request: allow this host instead."),
) -> None:
    """Answer a proposal; the agent's waiting tool call returns the answer at once."""
    from bottle import paths
    from bottle.cli.common import loaded_plugins
    from bottle.display import terminal_safe
    from bottle.errors import UsageError
    from bottle_supervise.desk import answer as answer_proposal

    if approve == reject:
        raise UsageError("Give exactly one of --approve and --reject.")
    if reject and host is not None:
        raise UsageError("Argument --host: only with --approve (to allow another host than the one asked for).")
    decision = "reject" if reject else "approve" if host is None else "modify"
    answered = answer_proposal(paths.state_root(), proposal_id, decision, note, host, plugins=loaded_plugins())
    granted = f": {answered['bottle']} may now reach {answered['answer_value']}" if answered["answer_value"] else ""
    print(terminal_safe(f"proposal {proposal_id} {answered['status']}{granted}"))


def supervise() -> None:
    """Watch and answer the proposals of all bottles in a terminal UI, with the selected bottle's audit log."""
    from bottle import paths
    from bottle.cli.common import loaded_plugins
    from bottle_supervise.tui import SuperviseApp

    SuperviseApp(paths.state_root(), loaded_plugins()).run()

