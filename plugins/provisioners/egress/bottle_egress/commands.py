"""``bottle egress allow|deny|budget`` and ``bottle usage``: change what a running bottle may reach or spend, and
say what bottles used (the egress plugin's commands)."""

from typing import Optional

import typer

from bottle.cli.common import SLUG

app = typer.Typer(help="Change what a running bottle may reach or spend.", no_args_is_help=True, rich_markup_mode=None)

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


@app.command("budget")
def budget(
    slug: str = SLUG,
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="The new budget in tokens."),
    max_usd: Optional[float] = typer.Option(None, "--max-usd", min=0.01, help="The new budget in dollars."),
) -> None:
    """Raise (or lower) a bottle's budget: its next Messages request is checked against the new one."""
    from bottle.errors import UsageError
    from bottle_egress.usage import change_budget

    if max_tokens is None and max_usd is None:
        raise UsageError("Give --max-tokens, --max-usd or both.")
    now = change_budget(slug, max_tokens, max_usd, by="bottle egress budget")
    print(f"{slug}'s budget: {now.get('max_tokens') or '-'} tokens, ${now.get('max_usd') or '-'} per {now['per']}")


def usage(
    slug: Optional[str] = typer.Argument(None, metavar="[SLUG]", help="One bottle (default: every bottle here)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only replies of the last 30m, 12h, 7d ..."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Tokens each bottle used of the Messages API, by model, with an estimated cost (the `model_prices`
    setting), as its sidecar metered the replies."""
    import time

    from bottle.cli.common import print_json
    from bottle.display import terminal_safe
    from bottle.sessions import parse_duration, stored, stored_bottles
    from bottle_egress.usage import usage_of

    after = time.time() - parse_duration(since, "--since") if since else 0.0
    bottles = [stored(slug)] if slug else stored_bottles()
    report = {}
    for bottle in bottles:
        total, models = usage_of(bottle.state_dir, after)
        report[bottle.slug] = {"total": total.as_dict(), "models": {m: t.as_dict() for m, t in models.items()}}
    if as_json:
        print_json(report)
        return
    print(f"{'BOTTLE':28} {'MODEL':28} {'REQUESTS':>8} {'INPUT':>10} {'OUTPUT':>10} {'CACHE W':>10} {'CACHE R':>10} {'USD':>9}")
    for name, entry in report.items():
        for model, row in [*entry["models"].items(), ("(all)", entry["total"])]:
            usd = "-" if row["usd"] is None else f"{row['usd']:.4f}"
            print(terminal_safe(f"{name:28} {model[:28]:28} {row['requests']:>8} {row['input_tokens']:>10} "
                                f"{row['output_tokens']:>10} {row['cache_creation_input_tokens']:>10} "
                                f"{row['cache_read_input_tokens']:>10} {usd:>9}"))
    if not report:
        print("no bottles")
