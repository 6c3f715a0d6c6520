"""bottle: run an AI coding agent with broad permissions inside a sandbox whose
only way out is a sidecar the operator controls.

The core never imports a plugin; plugins import the public names below and
register through the ``bottle`` entry-point group.
"""

from bottle.hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
__version__ = "0.1.0"
