"""Publish a port of a bottle on the host's loopback: a server the agent runs (a web app it builds) reached from
the host, and from nothing else (``bottle run --publish``, ``bottle ports SLUG --add``).

The host listens on ``127.0.0.1:HOST`` only. Each connection it accepts is
carried by the backend (:meth:`bottle.backend.Backend.connect`): for Docker,
an exec in the sidecar relays it to ``GUEST`` on the sandbox's address on the
bottle's internal network, over the engine's exec channel. No port is
published on any network, the sandbox gains no route out, and other bottles
reach nothing of it. The agent's server must listen on the sandbox's
address (``0.0.0.0``), not its loopback only: the sidecar connects from
outside the sandbox.

Each forwarder keeps a record in the state dir (``ports/HOST.json``), which
``bottle ports SLUG`` lists while the process that forwards is alive.
"""

import contextlib
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from bottle.errors import EnvironmentProblem, UsageError

PORTS = "ports"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Published:
    """A guest port and the host port (on 127.0.0.1) it is reached on."""

    host: int
    guest: int

    @classmethod
    def parse(cls, spec: str, option: str) -> "Published":
        """``8080`` (the same number on the host) or ``9000:8080`` (host 9000 to guest 8080)."""
        match = re.fullmatch(r"(?:(\d{1,5}):)?(\d{1,5})", spec.strip())
        ports = [int(match[1] or match[2]), int(match[2])] if match else []
        if not ports or not all(0 < port < 65536 for port in ports):
            raise UsageError(f"Option {option}: {spec!r} is not a port: PORT or HOST_PORT:PORT, each 1 to 65535.")
        return cls(*ports)


def records(state_dir: Path) -> list[dict]:
    """The ports published now: each record whose forwarding process is alive."""
    alive = []
    for path in sorted((state_dir / PORTS).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            os.kill(record["pid"], 0)
        except (OSError, ValueError, KeyError):
            continue
        alive.append(record)
    return alive


class Forwarder:
    """127.0.0.1:*published.host* to *published.guest* in bottle *slug*, until :meth:`stop`."""

    def __init__(self, backend, slug: str, published: Published, state_dir: Path):
        self.backend, self.slug, self.published = backend, slug, published
        self.record = state_dir / PORTS / f"{published.host}.json"
        self.listener: socket.socket | None = None

    def start(self) -> "Forwarder":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.published.host))
        except OSError as err:
            listener.close()
            raise EnvironmentProblem(f"Cannot publish port {self.published.guest} of bottle {self.slug} on "
                                     f"127.0.0.1:{self.published.host}: {err.strerror or err}.", exit_code=2) from None
        listener.listen(16)
        self.listener = listener
        self.record.parent.mkdir(mode=0o700, exist_ok=True)
        self.record.write_text(json.dumps({"host": self.published.host, "guest": self.published.guest,
                                           "address": f"127.0.0.1:{self.published.host}", "pid": os.getpid()}))
        threading.Thread(target=self._accept, daemon=True, name=f"publish-{self.published.host}").start()
        return self

    def stop(self) -> None:
        self.record.unlink(missing_ok=True)
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                channel = self.backend.connect(self.slug, self.published.guest)
            except Exception as err:  # one connection failing must not stop the others
                print(f"bottle: port {self.published.guest} of {self.slug}: {err}", file=sys.stderr)
                return
            threading.Thread(target=_to_guest, args=(client, channel), daemon=True).start()
            try:
                while chunk := channel.recv():
                    client.sendall(chunk)
            except OSError:
                pass
            finally:
                channel.close()
                with contextlib.suppress(OSError):  # wakes the other direction's recv: the client sees the end
                    client.shutdown(socket.SHUT_RDWR)
            if channel.error:
                print(f"bottle: port {self.published.guest} of {self.slug}: {channel.error}", file=sys.stderr)


def _to_guest(client: socket.socket, channel) -> None:
    try:
        while chunk := client.recv(CHUNK):
            channel.send(chunk)
        channel.close_write()
    except OSError:
        pass
