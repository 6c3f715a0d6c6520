"""The images plugin (entry point ``images``): ``bottle image bootstrap|build``.

An entry point of the core's distribution while the image code lives there.
"""

from bottle import hookimpl
from bottle_images import commands


@hookimpl
def bottle_register_commands(app):
    app.add_typer(commands.app, name="image")
