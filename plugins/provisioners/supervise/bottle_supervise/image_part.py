"""What the supervise server (``bottle_supervise_sidecar``) needs in the sidecar image: the MCP SDK.

The SDK brings what else the server imports (starlette, uvicorn, anyio,
pydantic). The ImagePart model is imported in the implementation, not here:
this module is imported for ``bottle --help``.
"""

from bottle import hookimpl


@hookimpl
def bottle_sidecar_image_parts():
    from bottle.sidecar.service import ImagePart

    return [ImagePart(
        name="supervise",
        packages=("bottle_supervise_sidecar",),
        # 2.x (MCPServer) needs h11 0.16, as mitmproxy 12 does; 1.x held mitmproxy at 11 through h11.
        # Installed with the other parts' pins in one resolution.
        pip=("mcp==2.3.0",),
    )]
