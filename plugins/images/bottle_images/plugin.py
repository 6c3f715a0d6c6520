"""The images plugin (entry point ``images``): ``bottle image bootstrap|build`` and the settings they read.

The sidecar image is made of the parts every loaded plugin declares
(``bottle_sidecar_image_parts``): install a plugin, rebuild the sidecar, and
its services are in the image.
"""

from bottle import hookimpl
from bottle_images import commands


@hookimpl
def bottle_register_commands(app):
    app.add_typer(commands.app, name="image")


@hookimpl
def bottle_register_settings(register):
    from bottle_images.settings import ImageSettings  # pydantic: not for `bottle --help`

    register(ImageSettings)


@hookimpl
def bottle_doctor(settings):
    from bottle_images.doctor import images_section  # the Docker SDK: not for `bottle --help`

    return images_section(settings)
