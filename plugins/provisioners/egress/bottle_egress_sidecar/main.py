"""The egress proxy's command: it listens first, then loads mitmproxy (see ``egress`` for what the proxy does).

Run in the sidecar as::

    python -m bottle_egress_sidecar.main --listen-host 0.0.0.0 --listen-port 3128 \\
        --confdir DIR --policy FILE --credentials FILE --audit FILE

Loading mitmproxy takes a quarter of a second of CPU, and a bottle's agent
waits for its sidecar to say it listens before it starts. So this module
imports no more than its checks need: it binds the port, checks what the
proxy starts from (the policy, the credentials, the bottle's CA, the audit
log; any of them wrong ends it with exit code 2 and one line saying why), and
says ``bottle-egress: listening on HOST:PORT``. Only then does it load the
proxy, which takes over the listening socket: a connection that comes
meanwhile (the agent, starting beside it) waits in the socket's queue and is
served as soon as the proxy runs, never refused.
"""

import argparse
import socket
import sqlite3
import sys

from mitmproxy.utils import human  # the size syntax of mitmproxy's options; a light module

from bottle_egress_sidecar.policy import PolicyError, PolicyFile
from bottle_sidecar.audit import AuditLog
from bottle_sidecar.startup import StartupError, load_credentials

CA_FILE = "mitmproxy-ca.pem"  # in --confdir: the bottle's CA, key and certificate
DEFAULT_REQUEST_BODY_LIMIT = "64m"  # mitmproxy's size syntax: k, m, g suffixes
BACKLOG = 128  # connections the kernel queues while the proxy loads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bottle_egress_sidecar.main", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=3128, help="0 picks a free port (printed when ready)")
    parser.add_argument("--confdir", required=True, help=f"holds {CA_FILE}, the bottle's CA key and certificate")
    parser.add_argument("--policy", required=True, help="the egress policy (JSON), reloaded when it changes")
    parser.add_argument("--credentials", help="credential values as JSON {name: value}, mode 0600")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    parser.add_argument(
        "--upstream-extra-ca", help="CA certificates (PEM) trusted upstream besides the usual public ones"
    )
    parser.add_argument(
        "--request-body-limit", type=_size_option, default=DEFAULT_REQUEST_BODY_LIMIT, metavar="SIZE",
        help="larger request bodies get a 413, since each is held whole to be scanned (k, m, g suffixes; "
             f"default {DEFAULT_REQUEST_BODY_LIMIT})",
    )
    return parser.parse_args(argv)


def _size_option(text: str) -> str:
    human.parse_size(text)  # a ValueError is argparse's "invalid value"
    return text


def check_ca(confdir: str) -> None:
    """The bottle's CA must be there: mitmproxy would otherwise make a new one the sandbox does not trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = f"{confdir}/{CA_FILE}"
    try:
        with open(path, "rb") as file:
            pem = file.read()
        load_pem_private_key(pem, None)
        x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError, TypeError) as err:
        raise StartupError(f"cannot read the bottle's CA (key and certificate) from {path}: {err}") from None


def listen(host: str, port: int) -> socket.socket:
    """The proxy's listening socket, bound now; StartupError if the address is taken or not this machine's.

    Its protocol is said (IPPROTO_TCP), as asyncio's own listening sockets say it: asyncio turns Nagle's
    algorithm off (TCP_NODELAY) only on connections of a socket that does, and with it on, every small
    response waited some 40 ms for the client's delayed acknowledgement.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(BACKLOG)
    except OSError as err:
        listener.close()
        raise StartupError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return listener


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        listener = listen(args.listen_host, args.listen_port)
        policies = PolicyFile(args.policy)
        credentials = load_credentials(args.credentials)
        missing = [f"{r.name} (for {r.host})" for r in policies.current().credentials if r.name not in credentials]
        if missing:
            source = args.credentials or "--credentials (not given)"
            raise StartupError(f"no value in {source} for the credential(s) {', '.join(missing)}")
        check_ca(args.confdir)
        audit = AuditLog(args.audit, policies.current().bottle)
    except (PolicyError, StartupError) as err:
        print(f"bottle-egress: {err}", file=sys.stderr, flush=True)
        return 2
    except sqlite3.Error as err:
        print(f"bottle-egress: cannot open the audit log {args.audit}: {err}", file=sys.stderr, flush=True)
        return 2
    host, port = listener.getsockname()[:2]
    print(f"bottle-egress: listening on {host}:{port}", flush=True)
    try:
        from bottle_egress_sidecar.egress import run

        run(args, policies, credentials, audit, listener)
    finally:
        audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
