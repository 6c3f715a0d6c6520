"""The egress proxy as it runs in the sidecar: ``python -m bottle_egress_sidecar.main``
in a subprocess, with the CA the host makes, in front of HTTPS and plain HTTP
servers this module starts. Everything listens and connects on loopback only;
the proxy reaches the servers because the rules name 127.0.0.1 literally.

One proxy serves the whole module; each test writes the policy it needs (the
proxy reloads it on the next request) and reads the audit rows its requests left.
"""

import asyncio
import gzip
import http.client
import json
import os
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mitmproxy.test import tflow
from mitmproxy.utils import human
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from bottle_egress.authority import generate_ca
from bottle_egress_sidecar import egress, main
from bottle_sidecar.audit import AuditLog, read_events
from bottle_egress_sidecar.egress import CheckedResolver, EgressAddon, ForbiddenAddress
from bottle_egress_sidecar.policy import PolicyFile
from tests.support import certs

SLUG = "egress-test"
BODY_LIMIT = human.parse_size(main.DEFAULT_REQUEST_BODY_LIMIT)  # the proxy's own, as main gives it
REAL_KEY = "real-upstream-key-5f1c0e"
PLACEHOLDER = "sk-ant-api03-bottle-placeholder-0000000000000000000000"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLQ"
TIMEOUT = 10
MiB = 1024 * 1024


class Upstream(BaseHTTPRequestHandler):
    """Answers every request with 200 and remembers what it saw."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append(
            {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
             "body": body}
        )
        reply = b"hello from upstream"
        self.send_response(200)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class Scripted(BaseHTTPRequestHandler):
    """Answers by path: a body in two parts, the second sent only once the test sets
    ``server.go_on`` (``/sse``, ``/chunked``, ``/until-close``, ``/large``), or ``/status/CODE``.

    A client reads the first part before it sets ``go_on``: through a proxy that
    holds responses until they are complete, it never gets it.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/status/"):
            body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
            self.send_response(int(self.path.removeprefix("/status/")))
            self.send_header("retry-after", "7")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        first, second = TWO_PARTS[self.path]
        self.send_response(200)
        if self.path == "/sse":
            self.send_header("content-type", "text/event-stream")
        if self.path == "/large":
            self.send_header("content-length", str(len(first) + len(second)))
        elif self.path == "/until-close":
            self.close_connection = True
        else:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunked = self.path in ("/sse", "/chunked")
        for part in (first, second):
            if part is second:
                self.server.go_on.wait(TIMEOUT)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def do_POST(self):
        """A Messages reply, streamed in two parts (the second once ``go_on`` is set) or whole as JSON."""
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if "stream" not in self.path:
            body = json.dumps({"type": "message", "model": "claude-test-1", "usage": REPLY_USAGE}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for part in MESSAGE_PARTS:
            if part is MESSAGE_PARTS[1]:
                self.server.go_on.wait(TIMEOUT)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


REPLY_USAGE = {"input_tokens": 1200, "output_tokens": 30, "cache_creation_input_tokens": 5,
               "cache_read_input_tokens": 7}
MESSAGE_PARTS = (
    b'event: message_start\ndata: {"type": "message_start", "message": {"model": "claude-test-1", "usage": '
    b'{"input_tokens": 1200, "output_tokens": 1, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7}}}\n\n'
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"text": "Hel',  # cut mid-line
    b'lo"}}\n\nevent: message_delta\ndata: {"type": "message_delta", "usage": {"output_tokens": 30}}\n\n'
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
)

TWO_PARTS = {
    "/sse": (b'event: message_start\ndata: {"type": "message_start"}\n\n',
             b'event: message_stop\ndata: {"type": "message_stop"}\n\n'),
    "/chunked": (b"the first chunk;", b"the second chunk"),
    "/until-close": (b"no length: ", b"read until the connection closes"),
    "/large": (b"a" * egress.STREAM_ABOVE, b"b" * egress.STREAM_ABOVE),
}


class RawListener(socketserver.ThreadingTCPServer):
    """A TCP server that records whatever bytes reach it."""

    daemon_threads = True

    def __init__(self):
        self.received = bytearray()
        listener = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                while chunk := self.request.recv(4096):
                    listener.received += chunk

        super().__init__(("127.0.0.1", 0), Handler)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class World:
    """The proxy's surroundings: its files, the upstream servers, and clients that go through it."""

    dir: Path
    https: ThreadingHTTPServer
    plain: ThreadingHTTPServer
    raw: RawListener
    scripted: ThreadingHTTPServer
    proxy_port: int = 0
    last_event: int = 0

    @property
    def audit(self) -> Path:
        return self.dir / "audit.sqlite"

    @property
    def bottle_ca(self) -> Path:
        return self.dir / "bottle-ca.pem"

    @property
    def https_port(self) -> int:
        return self.https.server_address[1]

    @property
    def plain_port(self) -> int:
        return self.plain.server_address[1]

    def policy(self, allow, credentials=(), secret_patterns=(), **fields):
        """Write the policy (*fields*: its other top-level fields); the proxy picks it up on its next request."""
        document = {"bottle": SLUG, "allow": list(allow), "credentials": list(credentials),
                    "secret_patterns": list(secret_patterns), **fields}
        staging = self.dir / "policy.json.new"
        staging.write_text(json.dumps(document))
        os.replace(staging, self.dir / "policy.json")

    def events(self) -> list[dict]:
        """The audit rows written since the last call."""
        events = read_events(self.audit, since_id=self.last_event)
        if events:
            self.last_event = events[-1]["id"]
        return events

    def https_connection(self, port: int, host="localhost") -> http.client.HTTPSConnection:
        """A connection to host:port through a CONNECT tunnel, trusting the bottle's CA."""
        context = ssl.create_default_context(cafile=str(self.bottle_ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy_port, context=context, timeout=TIMEOUT)
        conn.set_tunnel(host, port)
        return conn

    def https_request(self, path="/", *, host="localhost", port=None, method="GET", headers=None, body=None):
        """A request through a CONNECT tunnel, trusting the bottle's CA: (status, body)."""
        conn = self.https_connection(port or self.https_port, host)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def http_request(self, path="/", *, host="localhost", headers=None):
        """A plain HTTP request in absolute form: (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=TIMEOUT)
        try:
            conn.request("GET", f"http://{host}:{self.plain_port}{path}", headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def open_tunnel(self, target: str) -> tuple[int, bytes, socket.socket]:
        """A raw CONNECT: the status, the body of a refusal, and the socket (the tunnel, after a 200)."""
        sock = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=TIMEOUT)
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock, method="CONNECT")
        response.begin()
        return response.status, b"" if response.status == 200 else response.read(), sock

    def connect(self, target: str, then: bytes = b"") -> bytes:
        """A raw CONNECT, then *then* into the tunnel: the status line and what followed."""
        status, body, sock = self.open_tunnel(target)
        with sock:
            answer = f"HTTP/1.1 {status}\r\n".encode() + body
            if status == 200:
                sock.sendall(then)
                sock.settimeout(1)
                try:
                    while chunk := sock.recv(4096):
                        answer += chunk
                except (TimeoutError, ConnectionResetError):
                    pass
            return answer


def _https_server(directory: Path, ca, handler=Upstream) -> ThreadingHTTPServer:
    cert, key = ca.issue(directory, ["localhost", "127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen = []
    server.go_on = threading.Event()
    return serve(server)


def _plain_server() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.seen = []
    return serve(server)


def write_credentials(directory: Path, values: dict) -> None:
    path = directory / "credentials.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)


def start_proxy(directory: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """The proxy as the sidecar starts it, on the files in *directory*: the process, and where its stderr goes."""
    stderr = directory / "proxy.stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "bottle_egress_sidecar.main", "--listen-host", "127.0.0.1", "--listen-port", "0",
         "--confdir", str(directory / "confdir"), "--policy", str(directory / "policy.json"),
         "--credentials", str(directory / "credentials.json"), "--audit", str(directory / "audit.sqlite"), *extra],
        stdout=subprocess.PIPE, stderr=stderr.open("wb"), text=True,
    )
    return process, stderr


def _listening_port(process: subprocess.Popen, stderr: Path) -> int:
    """Wait for the line the sidecar's init waits for; the port it names."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        line = process.stdout.readline() if ready else ""
        if line.startswith("bottle-egress: listening on "):
            return int(line.rsplit(":", 1)[1])
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"the proxy did not start:\n{stderr.read_text()}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("egress")
    upstream_ca = certs.TestCA.create()
    (directory / "upstream-ca.pem").write_bytes(upstream_ca.cert_pem)
    bottle_ca = generate_ca(SLUG)
    (directory / "confdir").mkdir()
    (directory / "confdir" / "mitmproxy-ca.pem").write_bytes(bottle_ca.key_pem + bottle_ca.cert_pem)
    (directory / "bottle-ca.pem").write_bytes(bottle_ca.cert_pem)
    write_credentials(directory, {"TEST_API_KEY": REAL_KEY})
    world = World(directory, _https_server(directory / "upstream", upstream_ca), _plain_server(), serve(RawListener()),
                  _https_server(directory / "scripted", upstream_ca, Scripted))
    world.policy([])
    process, stderr = start_proxy(directory, "--upstream-extra-ca", str(directory / "upstream-ca.pem"),
                                  "--request-body-limit", "1m")
    try:
        world.proxy_port = _listening_port(process, stderr)
        yield world
    finally:
        process.terminate()
        process.wait(TIMEOUT)
        for server in (world.https, world.plain, world.raw, world.scripted):
            server.shutdown()


def loopback(port: int) -> list[str]:
    """Rules that let ``localhost:port`` through: the name, and 127.0.0.1 literally (plus ::1,
    where localhost resolves to it too)."""
    return [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"]


def test_an_allowed_host_is_reached_and_audited(world):
    world.policy(loopback(world.https_port))
    world.events()

    status, body = world.https_request("/hello?q=1")

    assert (status, body) == (200, "hello from upstream")
    assert world.https.seen[-1]["path"] == "/hello?q=1"
    rows = [(e["decision"], e["method"], e["host"], e["port"], e["path"]) for e in world.events()
            if e["decision"] == "allowed"]
    assert rows == [("allowed", "CONNECT", "localhost", world.https_port, None),
                    ("allowed", "GET", "localhost", world.https_port, "/hello")]  # no query in the log


def test_a_host_no_rule_allows_gets_403_at_connect_with_how_to_allow_it(world):
    world.policy([f"127.0.0.1:{world.https_port}"])
    world.events()

    answer = world.connect(f"localhost:{world.https_port}").decode()

    assert answer.startswith("HTTP/1.1 403")
    assert f"no egress rule allows localhost:{world.https_port}" in answer
    assert f"bottle egress allow {SLUG} localhost:{world.https_port}" in answer
    assert "[egress] allow" in answer
    [event] = [e for e in world.events() if e["decision"] == "blocked"]
    assert (event["method"], event["host"], event["detail"]["check"]) == ("CONNECT", "localhost", "allowlist")


def test_a_name_resolving_to_loopback_needs_a_rule_naming_the_address(world):
    world.policy([f"localhost:{world.https_port}"])
    world.events()

    answer = world.connect(f"localhost:{world.https_port}").decode()

    assert answer.startswith("HTTP/1.1 403")
    assert "localhost resolves to" in answer and "a loopback address" in answer
    assert f"bottle egress allow {SLUG} " in answer
    [event] = world.events()[-1:]
    assert (event["decision"], event["detail"]["check"]) == ("blocked", "address")


def test_a_request_for_another_host_inside_a_tunnel_is_blocked(world):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()

    status, body = world.https_request("/", headers={"Host": f"127.0.0.1:{world.https_port}"})

    assert status == 403
    assert f"the Host header names 127.0.0.1:{world.https_port} but the request goes to localhost" in body
    assert len(world.https.seen) == seen
    assert world.events()[-1]["detail"]["check"] == "fronting"


def test_a_tls_sni_naming_another_host_is_blocked(world):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    status, _, sock = world.open_tunnel(f"localhost:{world.https_port}")
    assert status == 200
    context = ssl.create_default_context(cafile=str(world.bottle_ca))

    with context.wrap_socket(sock, server_hostname="elsewhere.localhost") as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: localhost:{world.https_port}\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        body = response.read().decode()

    assert response.status == 403
    assert "the TLS SNI names elsewhere.localhost" in body
    assert len(world.https.seen) == seen


@pytest.mark.parametrize(
    "path, headers",
    [("/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB", {}),
     ("/resolve?name=example.com", {"accept": "application/dns-json"})],
)
def test_dns_over_https_is_blocked_even_to_an_allowed_host(world, path, headers):
    world.policy(loopback(world.https_port))
    world.events()

    status, body = world.https_request(path, headers=headers)

    assert status == 403
    assert "DNS over HTTPS" in body
    assert world.events()[-1]["detail"]["check"] == "doh"


def test_a_known_doh_resolver_is_refused_at_connect_before_any_lookup(world):
    world.policy(["dns.google", "*.google"])
    world.events()

    answer = world.connect("dns.google:443").decode()

    assert answer.startswith("HTTP/1.1 403")
    assert "dns.google is a DNS-over-HTTPS resolver" in answer
    assert world.events()[-1]["detail"]["check"] == "doh"


def _audit_bytes(world) -> bytes:
    return b"".join(path.read_bytes() for path in world.dir.glob("audit.sqlite*"))


@pytest.mark.parametrize(
    "where, request_args",
    [("url", {"path": f"/search?token={GITHUB_TOKEN}"}),
     ("body", {"path": "/upload", "method": "POST", "body": f'{{"aws": "{AWS_KEY}"}}'.encode()}),
     ("header x-debug", {"path": "/", "headers": {"x-debug": f"Bearer {GITHUB_TOKEN}"}})],
)
def test_a_secret_in_a_request_is_blocked_and_logged_without_the_secret(world, where, request_args):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()

    status, body = world.https_request(**request_args)

    assert status == 403
    assert f"in {where} at offset" in body
    assert len(world.https.seen) == seen
    [event] = [e for e in world.events() if e["decision"] == "blocked"]
    assert event["detail"]["check"] == "secret" and event["detail"]["location"] == where
    assert event["path"] is None
    audit = _audit_bytes(world)
    assert GITHUB_TOKEN.encode() not in audit and AWS_KEY.encode() not in audit


def test_the_profiles_own_secret_patterns_block_too(world):
    world.policy(loopback(world.https_port), secret_patterns=[r"corp-[0-9]{6}"])

    status, body = world.https_request("/", method="POST", body=b"ticket corp-123456")

    assert status == 403
    assert "secret_patterns[0] in body at offset 7" in body


def test_a_credential_route_replaces_whatever_the_client_sent(world):
    route = {"host": "localhost", "port": world.https_port, "header": "x-api-key", "scheme": "",
             "name": "TEST_API_KEY", "placeholder": PLACEHOLDER}
    world.policy(loopback(world.https_port), credentials=[route])
    world.events()

    status, _ = world.https_request(
        "/v1/messages", method="POST", body=f'{{"note": "my key is {PLACEHOLDER}"}}'.encode(),
        headers={"x-api-key": PLACEHOLDER, "authorization": "Bearer the-clients-own"},
    )

    assert status == 200
    seen = world.https.seen[-1]["headers"]
    assert seen["x-api-key"] == REAL_KEY
    assert "authorization" not in seen
    [injected] = [e for e in world.events() if e["decision"] == "injected"]
    assert injected["detail"] == {"credential": "TEST_API_KEY", "header": "x-api-key"}
    assert REAL_KEY.encode() not in _audit_bytes(world)


def test_a_bearer_route_sends_the_scheme(world):
    route = {"host": "localhost", "port": world.https_port, "header": "authorization", "scheme": "Bearer",
             "name": "TEST_API_KEY", "placeholder": PLACEHOLDER}
    world.policy(loopback(world.https_port), credentials=[route])

    assert world.https_request("/", headers={"authorization": f"Bearer {PLACEHOLDER}"})[0] == 200
    assert world.https.seen[-1]["headers"]["authorization"] == f"Bearer {REAL_KEY}"


def test_the_allowlist_changes_live(world):
    world.policy([])
    world.events()
    assert world.connect(f"localhost:{world.https_port}").startswith(b"HTTP/1.1 403")

    world.policy(loopback(world.https_port))

    assert world.https_request("/after-reload")[0] == 200
    decisions = [e["decision"] for e in world.events()]
    assert decisions == ["policy-reloaded", "blocked", "policy-reloaded", "allowed", "allowed"]


def test_plain_http_needs_an_http_rule(world):
    world.policy([f"localhost:{world.plain_port}", f"127.0.0.1:{world.plain_port}"])
    world.events()

    status, body = world.http_request("/plain")

    assert status == 403
    assert f"over plain HTTP" in body and f"http://localhost:{world.plain_port}" in body

    world.policy([f"http://localhost:{world.plain_port}", f"127.0.0.1:{world.plain_port}",
                  f"[::1]:{world.plain_port}"])

    assert world.http_request("/plain") == (200, "hello from upstream")
    assert world.plain.seen[-1]["path"] == "/plain"
    assert [e["decision"] for e in world.events()][-1] == "allowed"


def test_a_plain_request_whose_host_header_names_another_host_is_blocked(world):
    world.policy([f"http://localhost:{world.plain_port}", f"127.0.0.1:{world.plain_port}"])

    status, body = world.http_request("/", headers={"Host": "intranet.example"})

    assert status == 403
    assert "the Host header names intranet.example" in body


def test_a_tunnel_that_does_not_carry_http_is_not_relayed(world):
    port = world.raw.server_address[1]
    world.policy([f"127.0.0.1:{port}"])

    answer = world.connect(f"127.0.0.1:{port}", then=b"\x16\x00garbage that is not HTTP\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    assert world.raw.received == b""


def test_the_proxy_refuses_to_start_without_its_ca(tmp_path):
    (tmp_path / "policy.json").write_text(json.dumps({"bottle": SLUG}))
    write_credentials(tmp_path, {})
    (tmp_path / "confdir").mkdir()

    process, stderr = start_proxy(tmp_path)

    assert process.wait(30) == 2
    lines = stderr.read_text().splitlines()
    assert len(lines) == 1 and "cannot read the bottle's CA" in lines[0] and "mitmproxy-ca.pem" in lines[0]
    assert not (tmp_path / "confdir" / "mitmproxy-ca.pem").exists()  # mitmproxy did not make one


def test_the_proxy_refuses_to_start_with_a_bad_policy(tmp_path):
    (tmp_path / "policy.json").write_text(json.dumps({"bottle": SLUG, "allow": ["example.com/path"]}))
    write_credentials(tmp_path, {})

    process, stderr = start_proxy(tmp_path)

    assert process.wait(30) == 2
    [line] = stderr.read_text().splitlines()
    assert "allow[0]" in line and "'example.com/path'" in line


def test_the_proxy_refuses_to_start_on_a_port_in_use(tmp_path):
    (tmp_path / "policy.json").write_text(json.dumps({"bottle": SLUG}))
    write_credentials(tmp_path, {})
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process, stderr = start_proxy(tmp_path, "--listen-port", str(port))
        assert process.wait(30) == 2
    [line] = stderr.read_text().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_the_connections_of_the_proxys_own_socket_do_not_wait_for_acknowledgements():
    """asyncio switches Nagle's algorithm off only for the connections of a socket whose protocol is TCP; with it
    on, each small response through the proxy took some 40 ms more."""
    listener = main.listen("127.0.0.1", 0)

    async def nodelay() -> int:
        said = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            said.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        async with await asyncio.start_server(handle, sock=listener):
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            try:
                return await asyncio.wait_for(said, 5)
            finally:
                writer.close()

    assert asyncio.run(nodelay()) == 1


def test_it_says_it_listens_before_it_loads_the_proxy_which_serves_who_came_meanwhile(world, monkeypatch, capsys):
    """The sidecar is ready, and the agent starts, once this line is out: before mitmproxy is loaded, which
    takes longer. A client that connects meanwhile waits in the socket's queue; the proxy takes it first."""
    directory = world.dir
    seen = {}

    def run(args, policies, credentials, audit, listener):  # what egress.run is handed
        seen["said"] = capsys.readouterr().out
        with socket.create_connection(listener.getsockname()[:2], timeout=5) as early:  # nothing accepts yet
            accepted, _ = listener.accept()
            with accepted:
                seen["first"] = accepted.getpeername() == early.getsockname()
        listener.close()

    monkeypatch.setitem(sys.modules, "bottle_egress_sidecar.egress", type(sys)("stand-in", "egress.run only"))
    sys.modules["bottle_egress_sidecar.egress"].run = run
    code = main.main(["--listen-host", "127.0.0.1", "--listen-port", "0", "--confdir", str(directory / "confdir"),
                      "--policy", str(directory / "policy.json"), "--credentials", str(directory / "credentials.json"),
                      "--audit", str(directory / "early-audit.sqlite")])

    assert code == 0
    assert seen["said"].startswith("bottle-egress: listening on 127.0.0.1:") and seen["first"]


@pytest.mark.parametrize("path", list(TWO_PARTS))
def test_a_response_streams_through_as_it_arrives(world, path):
    """Server-sent events, a chunked body, a body read until the connection closes and one
    known to be large reach the client part by part: the upstream sends its second part
    only once the client has read the first through the proxy."""
    world.policy(loopback(world.scripted.server_address[1]))
    world.scripted.go_on = threading.Event()
    first, second = TWO_PARTS[path]
    conn = world.https_connection(world.scripted.server_address[1])
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read(len(first)) == first  # the upstream is still holding the second part
        world.scripted.go_on.set()
        assert response.read() == second
    finally:
        world.scripted.go_on.set()
        conn.close()


@pytest.mark.parametrize("status", [503, 529, 429])
def test_a_failure_status_from_upstream_passes_unchanged_and_is_audited(world, status):
    port = world.scripted.server_address[1]
    world.policy(loopback(port))
    world.events()
    conn = world.https_connection(port)
    try:
        conn.request("GET", f"/status/{status}")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()

    assert (response.status, response.getheader("retry-after")) == (status, "7")
    assert json.loads(body)["error"]["type"] == "overloaded_error"
    [row] = [e for e in world.events() if e["decision"] == "upstream-status"]
    assert (row["method"], row["host"], row["port"], row["path"]) == ("GET", "localhost", port, f"/status/{status}")
    assert row["detail"] == {"status": status, "retry_after": "7"}
    assert row["reason"].startswith(f"upstream answered {status}")


def _refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_upstream_that_refuses_the_connection_is_audited(world):
    port = _refused_port()
    world.policy(loopback(port))
    world.events()

    status, _ = world.https_request("/v1/messages", port=port)

    assert status == 502
    [row] = [e for e in world.events() if e["decision"] == "upstream-error"]
    assert (row["method"], row["host"], row["port"], row["path"]) == ("GET", "localhost", port, "/v1/messages")
    assert "the upstream connection failed: " in row["reason"] and "Connect call failed" in row["detail"]["error"]


def test_an_upstream_whose_certificate_does_not_verify_is_audited(world):
    stranger = _https_server(world.dir / "stranger", certs.TestCA.create("a CA the proxy does not trust"))
    port = stranger.server_address[1]
    world.policy(loopback(port))
    world.events()
    try:
        status, _ = world.https_request("/", port=port)
    finally:
        stranger.shutdown()
        stranger.server_close()

    assert status == 502
    assert stranger.seen == []
    [row] = [e for e in world.events() if e["decision"] == "upstream-error"]
    assert row["port"] == port and "Certificate verify failed" in row["detail"]["error"]


def _too_large_answer(world, body: str, upstream_seen: int) -> None:
    assert "bottle egress: blocked POST https://localhost" in body
    assert "over the egress proxy's limit of 1 MiB (1048576 bytes)" in body
    assert len(world.https.seen) == upstream_seen
    [row] = [e for e in world.events() if e["decision"] == "blocked"]
    assert (row["method"], row["path"], row["detail"]) == ("POST", "/upload", {"check": "size", "limit": MiB})


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_request_body_over_the_limit_gets_413_naming_it(world, framing):
    """Known by its length before the body, or found while it arrives: either way the client
    reads the 413 (the rest of its body is taken and dropped, not answered with a reset)."""
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()
    body = b"x" * (MiB + 1)
    conn = world.https_connection(world.https_port)
    try:
        if framing == "chunked":
            conn.request("POST", "/upload", body=iter([body[:MiB // 2]] * 3), encode_chunked=True)
        else:
            conn.request("POST", "/upload", body=body)
        response = conn.getresponse()
        answer = response.read().decode()
    finally:
        conn.close()

    assert response.status == 413
    assert response.getheader("connection") == "close"
    _too_large_answer(world, answer, seen)


def test_a_client_waiting_to_send_a_body_over_the_limit_gets_413_first(world):
    """curl sends "Expect: 100-continue" before large bodies: the 413 comes instead of the 100."""
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()
    status, _, sock = world.open_tunnel(f"localhost:{world.https_port}")
    assert status == 200
    context = ssl.create_default_context(cafile=str(world.bottle_ca))
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(f"POST /upload HTTP/1.1\r\nHost: localhost:{world.https_port}\r\n"
                    f"Content-Length: {2 * MiB}\r\nExpect: 100-continue\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        answer = response.read().decode()

    assert response.status == 413
    _too_large_answer(world, answer, seen)


def test_a_request_body_at_the_limit_is_scanned_and_sent(world):
    world.policy(loopback(world.https_port))

    assert world.https_request("/upload", method="POST", body=b"x" * MiB) == (200, "hello from upstream")
    assert len(world.https.seen[-1]["body"]) == MiB


def test_a_small_body_that_inflates_past_the_limit_gets_413(world):
    """1 MiB is the proxy's limit here; 64 KiB of gzip inflates to 64 MiB: it must not be inflated whole."""
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()
    bomb = gzip.compress(b"\0" * (64 * MiB), compresslevel=9)
    assert len(bomb) < MiB

    status, answer = world.https_request("/upload", method="POST", body=bomb, headers={"content-encoding": "gzip"})

    assert status == 413
    assert "decodes (gzip) to more than the egress proxy's limit of 1 MiB" in answer
    assert len(world.https.seen) == seen
    (row,) = [event for event in world.events() if event["decision"] == "blocked"]
    assert row["detail"]["check"] == "size"


@pytest.mark.parametrize(("encoding", "body"), [("br", b"\x1b\x00\x00"), ("gzip, gzip", b"x"), ("gzip", b"not gzip")])
def test_a_body_the_proxy_cannot_decode_with_a_bound_is_refused(world, encoding, body):
    """Scanning the encoded bytes would find nothing: what cannot be undone here does not leave."""
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)

    status, answer = world.https_request("/upload", method="POST", body=body, headers={"content-encoding": encoding})

    assert status == 415
    assert "why: the request body" in answer
    assert len(world.https.seen) == seen


def test_a_deflate_body_with_or_without_its_zlib_header_is_scanned(world):
    world.policy(loopback(world.https_port))
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for body in (zlib.compress(f"k={GITHUB_TOKEN}".encode()), raw.compress(f"k={GITHUB_TOKEN}".encode()) + raw.flush()):
        status, answer = world.https_request("/upload", method="POST", body=body, headers={"content-encoding": "deflate"})
        assert status == 403 and "GitHub Token in body" in answer


def test_the_request_body_limit_must_be_a_size():
    with pytest.raises(SystemExit):
        main.parse_args(["--confdir", "c", "--policy", "p", "--audit", "a", "--request-body-limit", "lots"])
    defaults = main.parse_args(["--confdir", "c", "--policy", "p", "--audit", "a"])
    assert defaults.request_body_limit == "64m"


# The addon's parts, without a proxy around them.


class Lookups:
    """A stand-in event loop whose getaddrinfo answers from *answers* (host: [addresses, ...]),
    one list per lookup, and remembers what it was asked."""

    def __init__(self, **answers):
        self.answers = answers
        self.asked = []

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        self.asked.append((host, flags))
        addresses = self.answers[host].pop(0) if flags == 0 else ["0.0.0.0"]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]


def policies(tmp_path, allow):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"bottle": SLUG, "allow": allow}))
    return PolicyFile(path)


def test_the_resolver_guards_every_lookup_of_the_event_loop(tmp_path):
    loop = Lookups(**{"internal.example": [["10.0.0.5"]]})
    resolver = CheckedResolver(loop, policies(tmp_path, ["internal.example"]))

    assert loop.getaddrinfo == resolver.getaddrinfo
    with pytest.raises(ForbiddenAddress, match="internal.example resolves to 10.0.0.5, a private address"):
        asyncio.run(loop.getaddrinfo("internal.example", 443, type=socket.SOCK_STREAM))
    # listening sockets are not upstream connections
    assert asyncio.run(loop.getaddrinfo("0.0.0.0", 3128, flags=socket.AI_PASSIVE))[0][4] == ("0.0.0.0", 3128)


def test_a_rule_naming_the_address_lets_a_name_reach_it(tmp_path):
    loop = Lookups(**{"db.internal": [["10.0.0.5"]]})
    resolver = CheckedResolver(loop, policies(tmp_path, ["db.internal", "10.0.0.0/24"]))

    assert asyncio.run(resolver.resolve("db.internal", 443))[0][4] == ("10.0.0.5", 443)


def test_the_connection_uses_the_address_that_was_checked(tmp_path, monkeypatch):
    # The name rebinds to loopback right after the check: the connect reuses the checked answer.
    loop = Lookups(**{"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    resolver = CheckedResolver(loop, policies(tmp_path, ["rebind.example"]))

    asyncio.run(resolver.resolve("rebind.example", 443))
    connect_to = asyncio.run(loop.getaddrinfo("rebind.example", 443, type=socket.SOCK_STREAM))

    assert [info[4][0] for info in connect_to] == ["93.184.216.34"]
    assert loop.asked == [("rebind.example", 0)]
    later = time.monotonic() + resolver.ttl + 1  # once the answer is stale, the next lookup is checked afresh
    monkeypatch.setattr(egress.time, "monotonic", lambda: later)
    with pytest.raises(ForbiddenAddress, match="a loopback address"):
        asyncio.run(loop.getaddrinfo("rebind.example", 443, type=socket.SOCK_STREAM))


def test_a_websocket_message_with_a_secret_is_dropped(tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite", SLUG)
    addon = EgressAddon(policies(tmp_path, ["example.com"]), {}, audit, resolver=None, body_limit=BODY_LIMIT)
    flow = tflow.twebsocketflow()
    flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, f"here: {GITHUB_TOKEN}".encode()))

    addon.websocket_message(flow)

    assert flow.websocket.messages[-1].dropped
    [event] = read_events(tmp_path / "audit.sqlite")
    assert event["decision"] == "blocked"
    assert event["detail"] == {"check": "secret", "detector": "GitHub Token", "location": "websocket message",
                               "offset": 6}


def test_a_check_that_fails_blocks_the_request(tmp_path):
    class Broken:
        async def resolve(self, host, port):
            raise RuntimeError("a bug")

    audit = AuditLog(tmp_path / "audit.sqlite", SLUG)
    addon = EgressAddon(policies(tmp_path, ["http://address:22"]), {}, audit, resolver=Broken(), body_limit=BODY_LIMIT)
    flow = tflow.tflow()

    asyncio.run(addon.request(flow))

    assert flow.response.status_code == 403
    assert read_events(tmp_path / "audit.sqlite")[-1]["detail"] == {"check": "internal"}


def _metered(world) -> list[dict]:
    return [e for e in world.events() if e["decision"] == "metered"]


def model_api(world, **fields) -> None:
    """The scripted server as the model API: a host the sidecar holds a credential for, hence metered."""
    port = world.scripted.server_address[1]
    route = {"host": "localhost", "port": port, "header": "x-api-key", "scheme": "", "name": "TEST_API_KEY",
             "placeholder": PLACEHOLDER}
    world.policy(loopback(port), credentials=[route], **fields)


def test_a_streamed_messages_reply_is_metered_as_it_passes(world):
    """The reply reaches the client part by part (the meter holds nothing back); its usage is recorded at its end."""
    model_api(world)
    world.events()
    world.scripted.go_on = threading.Event()
    conn = world.https_connection(world.scripted.server_address[1])
    try:
        conn.request("POST", "/v1/messages?stream", body=b"{}")
        response = conn.getresponse()
        assert response.read(len(MESSAGE_PARTS[0])) == MESSAGE_PARTS[0]  # the upstream still holds the rest
        world.scripted.go_on.set()
        assert response.read() == MESSAGE_PARTS[1]
    finally:
        world.scripted.go_on.set()
        conn.close()
    deadline = time.monotonic() + TIMEOUT
    while not (rows := _metered(world)) and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = rows
    assert row["detail"] == {"model": "claude-test-1", **REPLY_USAGE, "usd": None}
    assert row["path"] == "/v1/messages" and "1242 tokens" in row["reason"]


def test_a_whole_reply_of_the_model_api_is_metered_whatever_its_path_and_another_hosts_is_not(world):
    port = world.scripted.server_address[1]
    model_api(world)
    world.events()
    assert world.https_request("/v1//Messages/", port=port, method="POST", body=b"{}")[0] == 200
    (row,) = _metered(world)
    assert row["detail"]["input_tokens"] == 1200 and row["detail"]["output_tokens"] == 30

    world.policy(loopback(port))  # the same server, with no credential route: not the model API
    assert world.https_request("/v1/messages", port=port, method="POST", body=b"{}")[0] == 200
    assert _metered(world) == []


def test_past_its_budget_a_messages_request_gets_the_apis_own_error_until_the_budget_is_raised(world):
    port = world.scripted.server_address[1]
    prices = {"claude-test": {"input_tokens": 1000, "output_tokens": 1000}}
    model_api(world, budget={"max_tokens": 1000, "per": "run"}, prices=prices)
    world.events()
    for _ in range(20):  # until this proxy's run has used 1000 tokens (earlier tests' replies count too)
        status, body = world.https_request("/v1/messages", port=port, method="POST", body=b"{}")
        if status != 200:
            break
    assert status == 400
    error = json.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert f"bottle {SLUG}: its budget of 1000 tokens is spent" in error["error"]["message"]
    (refused,) = [e for e in world.events() if e["decision"] == "blocked"]
    assert refused["detail"]["check"] == "budget" and refused["detail"]["max_tokens"] == 1000
    world.policy(loopback(port), budget={"max_tokens": 1000, "per": "run"}, prices=prices)
    assert world.https_request("/v1/messages", port=port, method="POST", body=b"{}")[0] == 200, \
        "a host with no credential route is not the model API: no budget"

    model_api(world, budget={"max_tokens": 10**9, "per": "run"}, prices=prices)
    assert world.https_request("/v1/messages", port=port, method="POST", body=b"{}")[0] == 200
    (row,) = _metered(world)
    assert row["detail"]["usd"] == pytest.approx((1200 + 30) * 1000 / 1e6)


def test_a_large_body_trims_the_heap_when_its_flow_ends_and_again_when_its_connection_does():
    finished = []
    trimmer = type("Trimmer", (), {"finished": lambda self, size: finished.append(size)})()
    addon = egress.HeapAddon(trimmer)
    large, small = tflow.tflow(resp=True), tflow.tflow(resp=True)
    large.request.content = b"x" * (2 << 20)
    small.request.content = b"x" * 10

    for flow in (large, small):
        addon.response(flow)
        addon.client_disconnected(flow.client_conn)

    assert finished[0] >= 2 << 20 and finished[1] == finished[0]  # the flow's end, then its connection's
    assert finished[2] < 1 << 20 and finished[3] == 0  # small ones arm nothing
