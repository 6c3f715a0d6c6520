"""What the egress proxy (``bottle_egress_sidecar``) needs in the sidecar image: mitmproxy, with its parser pinned.

mitmproxy brings what else the proxy imports (cryptography, for the bottle's
CA). The ImagePart model is imported in the implementation, not here: this
module is imported for ``bottle --help``.
"""

from bottle import hookimpl


@hookimpl
def bottle_sidecar_image_parts():
    from bottle.sidecar.service import ImagePart

    return [ImagePart(
        name="egress",
        packages=("bottle_egress_sidecar",),
        pip=(
            # 12 needs Python 3.12 or later: Debian 13 (trixie) has 3.13, Debian 12 only 3.11.
            "mitmproxy==12.3.1",
            # mitmproxy's HTTP/1 parser, pinned on its own: 0.16.0 fixed CVE-2025-43859 (lenient
            # chunked-body parsing, a request-smuggling primitive); naming it here keeps a later
            # mitmproxy, or another part's pin, from bringing an older parser back.
            "h11==0.16.0",
        ),
        run=("mitmdump --version",),  # the proxy's command starts, its native libraries loaded
    )]
