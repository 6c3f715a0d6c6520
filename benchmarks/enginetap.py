"""A counting tap on the Docker engine's socket, for benchmarks.

Listens on a unix socket, relays every connection to the real engine socket,
and records the request line of each HTTP request the client sends. Pointing
``DOCKER_HOST`` at it measures how many engine round trips a command makes
without changing the command.
"""

import os
import re
import socket
import tempfile
import threading
from pathlib import Path

REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")


class EngineTap:
    def __init__(self, engine_socket: str = "/var/run/docker.sock"):
        self.engine_socket = engine_socket
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._dir = tempfile.mkdtemp(prefix="bottle-tap-")
        self.path = str(Path(self._dir) / "docker.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def take(self) -> list[tuple[str, str]]:
        """The requests seen so far, and start counting afresh."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def close(self) -> None:
        self._server.close()
        os.unlink(self.path)
        os.rmdir(self._dir)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.engine_socket)
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self.requests += [(m.decode(), p.decode()) for m, p in REQUEST_LINE.findall(data)]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
