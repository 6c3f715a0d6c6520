"""The ``bottle`` command. Heavy modules are imported inside commands so that
``bottle --help`` stays fast."""

import sys

import typer

from bottle.cli import egress, image, info, manage, run, supervise

app = typer.Typer(
    name="bottle",
    help="Run AI coding agents with broad permissions inside a bottle: a sandbox whose only way out "
    "is a sidecar you control.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.command("run")(run.run)
app.command("plugins")(info.plugins)
app.command("doctor")(info.doctor)
app.command("ls")(manage.ls)
app.command("stop")(manage.stop)
app.command("gc")(manage.gc)
app.command("exec")(manage.exec_)
app.command("audit")(egress.audit)
app.command("proposals")(supervise.proposals)
app.command("answer")(supervise.answer)
app.command("supervise")(supervise.supervise)
app.add_typer(egress.app, name="egress")
app.add_typer(image.app, name="image")


def main() -> None:
    from bottle.errors import BottleError

    try:
        app()
    except BottleError as err:
        print(f"bottle: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
