"""The core's own commands, registered as the essential plugin ``core``.

They are added through ``bottle_register_commands`` like any plugin's, first,
and cannot be blocked (``BOTTLE_PLUGINS``, ``BOTTLE_DISABLE_PLUGINS``), as
pytest's essential plugins: without them bottle could neither run a bottle
nor say which plugins it has.
"""

from bottle import hookimpl
from bottle.cli import audit, copy, info, lifecycle, manage, ports, run
from bottle.sidecar.kit import bottle_sidecar_image_parts  # noqa: F401 -- the kit's image part, as the essential plugin's


@hookimpl
def bottle_register_commands(app):
    app.command("run")(run.run)
    app.command("plugins")(info.plugins)
    app.command("doctor")(info.doctor)
    app.command("ls")(manage.ls)
    app.command("stop")(manage.stop)
    app.command("gc")(manage.gc)
    app.command("resume")(lifecycle.resume)
    app.command("rm")(lifecycle.rm)
    app.command("prune")(lifecycle.prune)
    app.command("logs")(lifecycle.logs)
    app.command("ports")(ports.ports)
    app.command("exec")(manage.exec_)
    app.command("audit")(audit.audit)
    app.command("cp")(copy.cp)
