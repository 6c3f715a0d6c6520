"""Relay one TCP connection between this process's stdin/stdout and ``HOST:PORT``: how a port of the sandbox
reaches the host (``bottle run --publish``, ``bottle ports``).

The host runs it as an exec in the sidecar, which shares the bottle's internal
network with the sandbox, and carries the bytes over the engine's exec
channel: nothing listens anywhere but the host's loopback, and the sandbox
gains no route. Each connection is one run: bytes from stdin go to the
server, and its end of input closes the server's write side (so a client that
half-closes is understood); what the server sends goes to stdout. Exit code
7 and one line on stderr when the server does not answer.

Usage: python -m bottle_sidecar.relay HOST PORT
"""

import os
import socket
import sys
import threading

CHUNK = 64 * 1024
NO_SERVER = 7


def _to_server(sock: socket.socket) -> None:
    try:
        while chunk := os.read(0, CHUNK):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    host, port = (argv if argv is not None else sys.argv[1:])[:2]
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
    except OSError as err:
        print(f"nothing answers on port {port} in the bottle ({err.strerror or err})", file=sys.stderr)
        return NO_SERVER
    sock.settimeout(None)
    threading.Thread(target=_to_server, args=(sock,), daemon=True).start()
    out = sys.stdout.buffer
    try:
        while chunk := sock.recv(CHUNK):
            out.write(chunk)
            out.flush()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
