"""The hook supervise publishes for other plugins (through ``bottle_addhooks``).

An approved proposal is carried out before the agent hears "approved": the
operator's desk (``bottle_supervise.desk``) asks through this hook, and the
plugin that owns the kind of proposal does it, so supervise imports none of
them. The egress plugin grants ``egress`` proposals (``bottle_egress.plugin``).
Implement it with ``@hookimpl(optionalhook=True)``: your plugin then loads
whether supervise is there or not.
"""

from bottle.hookspecs import hookspec


@hookspec(firstresult=True)
def bottle_supervise_grant(bottle: str, kind: str, value: str) -> "str | None":
    """Carry out the approval of a proposal of your *kind* for the bottle whose slug is *bottle*.

    *value* is what is granted: the proposal's own ``what``, or what the
    operator gave instead (``bottle answer ID --approve --host H``). Return
    the value granted, normalised as your plugin writes it (it goes back to
    the agent with the answer), or None when *kind* is not yours; the first
    non-None result decides. Raise :class:`ValueError` when *value* is not a
    valid one of your kind (the desk names where it came from) and a
    :class:`bottle.errors.BottleError` when it cannot be granted now (the
    bottle stopped, say): either refuses the approval, and the proposal stays
    pending.
    """
