"""The ``bottle`` command: what every plugin registers, the core's own commands first.

``bottle --help`` loads every plugin to list their commands, so heavy modules
are imported inside the commands, and the plugins to load are read without
pydantic (``bottle.plugin_choice``).
"""

import sys

import typer


def make_app(plugins) -> typer.Typer:
    """The ``bottle`` command with every command *plugins* register."""
    app = typer.Typer(
        name="bottle",
        help="Run AI coding agents with broad permissions inside a bottle: a sandbox whose only way out "
        "is a sidecar you control.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )
    plugins.register_commands(app)
    return app


def main() -> None:
    from bottle.cli.common import loaded_plugins
    from bottle.errors import BottleError

    try:
        plugins = loaded_plugins()
        app = make_app(plugins)
        for name, error in plugins.failures.items():
            print(f"bottle: plugin {name!r} failed to load: {error}", file=sys.stderr)
        app()
    except BottleError as err:
        print(f"bottle: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
