"""Credentials go to exactly one place: attacks from inside a real bottle (issue 10, item 5).

The fake Messages API's route names its host and port. A header-echo server
listens on another port of the same host, allowed too: the agent curls it, and
what it echoes (what reached it) must hold no real key. Before routes named a
port, the sidecar injected the key there and the echo handed it to the agent.
A route with a path prefix sends its key under the prefix only: not to another
path of the same port, nor to one that a server would read as another
(``/v1/../echo``).
"""

import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.conftest import REAL_API_KEY
from tests.integration.test_escape import bottles  # noqa: F401 (the fixture: bottles held mid-session)

pytestmark = pytest.mark.integration


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received: the path and the headers, as JSON."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        received = {"path": self.path, "headers": {name.lower(): value for name, value in self.headers.items()}}
        self.server.received.append(received)
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo(upstream_ca):
    """The echo server over HTTPS on every host address, with the fake API's certificate (the host's bridge address)."""
    server = ThreadingHTTPServer(("0.0.0.0", 0), Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(upstream_ca.cert, upstream_ca.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def echoed(bottle, url: str, *curl: str) -> dict:
    """What the echo server got from the agent's curl to *url* (through the sidecar), as it answered."""
    args = " ".join(curl)
    code, out = bottle.sh(f"curl -sS -m 6 --fail {args} -H \"x-api-key: $ANTHROPIC_API_KEY\" "
                          f"-H 'authorization: Bearer the-agents-own' '{url}'")
    assert code == 0, out
    return json.loads(out)


def test_another_port_of_the_routes_host_gets_no_key(home, fake_api, api_profile, host_gateway, echo, bottles):
    home.profile("default", api_profile(allow=(f"{host_gateway}:{echo.server_address[1]}",)))
    inmate = bottles("echoer")  # Claude Code is mid-session: its request reached the API with the real key

    answer = echoed(inmate, f"https://{host_gateway}:{echo.server_address[1]}/v1/messages")

    assert REAL_API_KEY not in json.dumps(answer)
    # nor the agent's own: on the route's host, the client's credential headers are dropped on every port
    assert "x-api-key" not in answer["headers"] and "authorization" not in answer["headers"]
    assert fake_api.message_requests(main_only=True)[-1].headers["x-api-key"] == REAL_API_KEY
    audit = json.dumps(inmate.audit())
    assert REAL_API_KEY not in audit
    assert not [row for row in inmate.audit() if row["decision"] == "injected"
                and row["port"] == echo.server_address[1]]


def test_only_paths_under_the_prefix_get_the_key(home, fake_api, api_profile, host_gateway, echo, bottles):
    echo_key = "echo-key-" + secrets.token_hex(16)
    home.env["ECHO_KEY"] = echo_key
    port = echo.server_address[1]
    home.profile("default", api_profile(allow=(f"{host_gateway}:{port}",)) + (
        f'\n[[credentials]]\nhost = "{host_gateway}"\nport = {port}\npath = "/v1/"\nheader = "x-api-key"\n'
        'env = "ECHO_KEY"\n'))
    inmate = bottles("prefixed")
    base = f"https://{host_gateway}:{port}"

    under = echoed(inmate, f"{base}/v1/echo")
    outside = {path: echoed(inmate, f"{base}{path}", "--path-as-is")
               for path in ("/v2/echo", "/v1beta/echo", "/v1/../echo", "/v1/%2e%2e/echo", "/echo")}

    assert under["headers"]["x-api-key"] == echo_key  # the route's own place: the key, as the route says
    for path, answer in outside.items():
        assert answer["path"] == path  # the server got the path as the agent wrote it
        assert echo_key not in json.dumps(answer) and "x-api-key" not in answer["headers"], path
    assert echo_key not in json.dumps(inmate.audit())
