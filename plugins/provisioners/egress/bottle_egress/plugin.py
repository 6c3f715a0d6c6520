"""The egress plugin (entry point ``egress``): ``bottle egress allow|deny``, and approved egress proposals.

Supervise asks for an approval to be carried out through the hook it
publishes, ``bottle_supervise_grant``; this answers for ``egress`` proposals
by putting the host on the bottle's live allowlist, and imports nothing of
supervise (the hook is optional: this loads whether supervise does or not).
It is an entry point of the core's distribution while the egress code lives
there.
"""

from bottle import hookimpl
from bottle_egress import commands


@hookimpl
def bottle_register_commands(app):
    app.add_typer(commands.app, name="egress")


@hookimpl(optionalhook=True)
def bottle_supervise_grant(bottle, kind, value):
    if kind != "egress":
        return None
    from bottle_egress import allowlist as egress_control  # the Docker SDK: not for `bottle --help`
    from bottle_egress_sidecar.policy import parse_rule

    rule = parse_rule(value).text  # a RuleError is a ValueError: the desk says where the host came from
    egress_control.change_allowlist(bottle, rule, allow=True)
    return rule
