"""The hello service: answers every ``GET`` with the bottle's greeting, and logs each answer in the audit log.

Run in the sidecar as::

    python -m bottle_hello_sidecar.server --port 8900 --bottle SLUG \\
        --greeting-file /bottle/state/hello.txt --audit /bottle/state/audit.sqlite

It prints ``bottle-hello: listening on HOST:PORT`` once it serves: the
sidecar's init counts a service as started when it prints its ``ready``
prefix. Each answer is a row of the audit log (source ``hello``, decision
``answered``, the client's address as its host), which ``bottle audit SLUG``
shows. Startup problems end it with exit code 2 and one line saying why: the
init then stops the sidecar, and with it the bottle.

Stdlib and the sidecar kit only: in the sidecar image this is ``bottle_hello_sidecar.server``.
"""

import argparse
import signal
import sqlite3
import sys
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bottle_sidecar.audit import AuditLog


def say(message: str, error: bool = False) -> None:
    print(f"bottle-hello: {message}", file=sys.stderr if error else sys.stdout, flush=True)


class Handler(BaseHTTPRequestHandler):
    def __init__(self, *args, greeting: bytes, audit: AuditLog, **kwargs):
        self.greeting, self.audit = greeting, audit
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.audit.record("hello", "answered", method="GET", host=self.client_address[0], path=self.path,
                          reason="greeted")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(self.greeting)))
        self.end_headers()
        self.wfile.write(self.greeting)

    def log_message(self, format: str, *args) -> None:
        """Quiet: every answer is in the audit log, and the init sends this output to the user's terminal."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bottle_hello_sidecar.server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port (printed when ready)")
    parser.add_argument("--bottle", required=True, help="the bottle's slug, for the audit log")
    parser.add_argument("--greeting-file", required=True, help="the greeting, written by the host at launch")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the init stops services with SIGTERM
    try:
        with open(args.greeting_file, "rb") as file:
            greeting = file.read()
        audit = AuditLog(args.audit, args.bottle)
        server = ThreadingHTTPServer((args.listen_host, args.port), partial(Handler, greeting=greeting, audit=audit))
    except (OSError, sqlite3.Error) as err:
        say(f"cannot start: {err}", error=True)
        return 2
    host, port = server.server_address[:2]
    say(f"listening on {host}:{port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
