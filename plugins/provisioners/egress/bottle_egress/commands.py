"""``bottle egress allow|deny``: change what a running bottle may reach (the egress plugin's commands)."""

import typer

from bottle.cli.common import SLUG

app = typer.Typer(help="Change what a running bottle may reach.", no_args_is_help=True, rich_markup_mode=None)

RULE = typer.Argument(..., metavar="HOST", help='A rule: "host", "*.suffix", "host:port", "http://host[:port]", an IP or CIDR.')


@app.command("allow")
def allow(slug: str = SLUG, rule: str = RULE) -> None:
    """Allow HOST for a running bottle, effective on its next request."""
    from bottle_egress.allowlist import change_allowlist

    rules = change_allowlist(slug, rule, allow=True)
    print(f"{slug} may now reach: {', '.join(rules)}")


@app.command("deny")
def deny(slug: str = SLUG, rule: str = RULE) -> None:
    """Remove the allow rule HOST from a running bottle."""
    from bottle_egress.allowlist import change_allowlist

    rules = change_allowlist(slug, rule, allow=False)
    print(f"{slug} may now reach: {', '.join(rules) or 'nothing'}")
