"""What the git gate (``bottle_gitgate_sidecar``) needs in the sidecar image: git itself, and ssh for upstreams.

The ImagePart model is imported in the implementation, not here: this module
is imported for ``bottle --help``.
"""

from bottle import hookimpl


@hookimpl
def bottle_sidecar_image_parts():
    from bottle.sidecar.service import ImagePart

    return [ImagePart(name="gitgate", packages=("bottle_gitgate_sidecar",), apt=("git", "openssh-client"))]
