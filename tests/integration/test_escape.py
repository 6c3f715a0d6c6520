"""The escape suite: attacks from inside a real, running bottle.

Every way out but the sidecar's proxy must fail, and every attempt that
reaches the proxy must be in the bottle's audit log. Only addresses on this
machine are ever targeted: the host's bridge addresses, Docker networks and
containers the test made.
"""

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from bottle.sidecar.runtime import OUTSIDE_NETWORK
from bottle_images.apt_sources import debian_mirrors
from tests.integration.conftest import REAL_API_KEY
from tests.support.fake_anthropic import held

AWS_KEY = "AKIA" + "QYLPMN5HHHFPZAM2"
GITHUB_TOKEN = "ghp_" + "wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx"


#: Every attempt the suite makes, and how many of them reach the sidecar's proxy. A count
#: that changes is an attempt added or lost: change these with the attempts, never alone.
ATTEMPTS = 16
AT_THE_PROXY = 8


@dataclass(frozen=True)
class Row:
    """The audit row one attempt at the proxy must leave: a blocked egress decision for
    host:port by *check*, with *path* (None where the proxy keeps none: a CONNECT, or a
    request whose URL may hold a secret) and, for a secret, the detector that found it."""

    host: str
    port: int
    check: str
    path: str | None = None
    detector: str | None = None

    def matches(self, event: dict) -> bool:
        detail = event.get("detail") or {}
        return (
            (event["source"], event["decision"], event["host"], event["port"], event["path"])
            == ("egress", "blocked", self.host, self.port, self.path)
            and detail.get("check") == self.check
            and (self.detector is None or detail.get("detector") == self.detector)
        )


@dataclass
class Attempt:
    name: str
    blocked: bool
    evidence: str
    row: Row | None = None  # None: never reaches the proxy, nothing to audit
    audited: list[dict] = field(default_factory=list)  # the rows it left (exactly one when it reaches the proxy)


class Bottled:
    """A running bottle, held mid-session, seen from inside and from the engine."""

    def __init__(self, home, engine, fake_api):
        self.home, self.engine, self.fake_api = home, engine, fake_api
        self.release = threading.Event()
        self.process = None

    def start(self, agent: str) -> "Bottled":
        self.fake_api.enqueue(held(self.release))
        before = len(self.fake_api.message_requests(main_only=True))
        self.process = self.home.popen("run", agent, "--prompt", "hi")
        deadline = time.monotonic() + 120
        while len(self.fake_api.message_requests(main_only=True)) <= before:
            if self.process.poll() is not None:
                raise AssertionError(f"bottle run {agent} ended early: {self.process.communicate()[1]}")
            assert time.monotonic() < deadline, f"bottle run {agent}: the agent never reached the API"
            time.sleep(0.2)
        containers = self.engine.containers.list(filters={"label": "bottle.agent=" + agent})
        self.agent = next(c for c in containers if c.labels.get("bottle.role") != "sidecar")
        self.sidecar = next(c for c in containers if c.labels.get("bottle.role") == "sidecar")
        self.slug = self.agent.labels["bottle.slug"]
        return self

    def sh(self, script: str, *, container=None, timeout: int = 8) -> tuple[int, str]:
        result = (container or self.agent).exec_run(["timeout", str(timeout), "bash", "-c", script], demux=False)
        return result.exit_code, result.output.decode(errors="replace")

    def curl(self, url: str, *extra: str) -> tuple[int, str]:
        """curl from the agent, through the proxy (its environment says so); prints the HTTP code."""
        args = " ".join(f"'{a}'" for a in extra)
        return self.sh(f"curl -sS -m 6 -o /dev/null -w '%{{http_code}}' {args} '{url}'")

    def audit(self) -> list[dict]:
        result = self.home.run("audit", self.slug, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stop(self) -> None:
        self.release.set()
        if self.process is not None:
            self.process.communicate(timeout=120)


@pytest.fixture
def bottles(home, engine, fake_api):
    made: list[Bottled] = []

    def make(agent: str) -> Bottled:
        home.agent(agent, "Hold still.")
        bottle = Bottled(home, engine, fake_api)
        made.append(bottle)
        return bottle.start(agent)

    yield make
    for bottle in made:
        bottle.stop()


def _ip_on(container, network_name: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"]


def _http_blocked(code: int, output: str) -> bool:
    """curl failed to connect, or the proxy answered 403."""
    return code != 0 or output.strip().endswith("403")


def _outside_name() -> str:
    """A name this machine's resolver answers (its Debian mirror), read from its apt sources."""
    return urlsplit(debian_mirrors("bookworm")[0].split()[1]).hostname


def _gateway(network) -> str:
    """A network's gateway address; the first address of its subnet where Docker lists none."""
    network.reload()
    config = network.attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def test_escape_suite(home, engine, fake_api, api_profile, host_gateway, bottles, report):
    """Every attempt is blocked; each one that reaches the proxy leaves its own audit row.

    An attempt's row is looked for only among the rows written since the
    previous attempt at the proxy (the log's ids grow), and no two attempts
    expect the same row, so one row never vouches for two attempts.
    """
    home.profile("default", api_profile(allow=(f"localhost:{fake_api.port}",)))
    inmate, neighbour = bottles("inmate"), bottles("neighbour")
    api = f"https://{host_gateway}:{fake_api.port}"
    internal = engine.networks.get(f"bottle-{inmate.slug}")
    egress = engine.networks.get(OUTSIDE_NETWORK)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    udp.settimeout(3)
    attempts: list[Attempt] = []
    seen = max((e["id"] for e in inmate.audit()), default=0)

    def record(name: str, blocked: bool, evidence: str, row: Row | None = None) -> None:
        nonlocal seen
        attempt = Attempt(name, blocked, evidence.strip()[-300:], row)
        if row is not None:
            new = [e for e in inmate.audit() if e["id"] > seen]
            seen = max((e["id"] for e in new), default=seen)
            attempt.audited = [e for e in new if row.matches(e)]
        attempts.append(attempt)

    # 1. HTTPS through the proxy to a host no rule allows.
    code, out = inmate.curl("https://not-allowed.bottle.test/")
    record("https to a non-allowed host", _http_blocked(code, out), out, Row("not-allowed.bottle.test", 443, "allowlist"))

    # 2. Straight TCP to the host with the proxy variables unset.
    no_proxy = "env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy"
    code, out = inmate.sh(f"{no_proxy} curl -sS -m 4 -k -o /dev/null -w '%{{http_code}}' {api}/")
    record("direct TCP to the host, proxy env unset", code != 0, out)

    # 3. DNS resolution of an outside name (the sidecar resolves it: the test means something).
    name = _outside_name()
    sidecar_code, _ = inmate.sh(f"getent hosts {name}", container=inmate.sidecar)
    assert sidecar_code == 0, "the sidecar must resolve the outside name for this test to mean anything"
    code, out = inmate.sh(f"getent hosts {name}")
    record("DNS resolution of an outside name", code != 0, out)

    # 4. UDP to the host.
    inmate.sh(f"echo escape > /dev/udp/{host_gateway}/{udp.getsockname()[1]}")
    try:
        udp.recvfrom(100)
        received = True
    except socket.timeout:
        received = False
    record("UDP out to the host", not received, "datagram received" if received else "nothing arrived")

    # 5. Cloud metadata, through the proxy (the proxy never connects to it).
    code, out = inmate.curl("http://169.254.169.254/latest/meta-data/")
    record("cloud metadata address via the proxy", _http_blocked(code, out), out,
           Row("169.254.169.254", 80, "allowlist", "/latest/meta-data/"))

    # 6. The host's addresses and the bridge gateways, directly; and the host through the proxy.
    for where, address in (("the host", host_gateway), ("the egress network's gateway", _gateway(egress)),
                           ("the bottle network's gateway", _gateway(internal))):
        code, out = inmate.sh(f"{no_proxy} curl -sS -m 4 -k -o /dev/null https://{address}:{fake_api.port}/")
        record(f"direct to {where} ({address})", code != 0, out)
    code, out = inmate.curl(f"https://{host_gateway}:{fake_api.port + 1}/")
    record("proxy to a host port no rule names", _http_blocked(code, out), out,
           Row(host_gateway, fake_api.port + 1, "allowlist"))

    # 7. Another bottle's sidecar: directly on every network it has, and through the proxy.
    for network in (egress.name, f"bottle-{neighbour.slug}"):
        address = _ip_on(neighbour.sidecar, network)
        code, out = inmate.sh(f"{no_proxy} curl -sS -m 4 -o /dev/null http://{address}:3128/")
        record(f"direct to another bottle's sidecar on {network}", code != 0, out)
    address = _ip_on(neighbour.sidecar, egress.name)
    code, out = inmate.curl(f"http://{address}:3128/escape")
    record("proxy to another bottle's sidecar", _http_blocked(code, out), out, Row(address, 3128, "allowlist", "/escape"))

    # 8. DNS over HTTPS, to a host:port the allowlist allows.
    code, out = inmate.curl(f"{api}/dns-query", "-H", "content-type: application/dns-message", "--data-binary", "x")
    record("DNS over HTTPS to an allowed host", _http_blocked(code, out), out,
           Row(host_gateway, fake_api.port, "doh", "/dns-query"))

    # 9. An allowed name that resolves to a private (loopback) address (NO_PROXY
    # names localhost, so the proxy is asked for explicitly).
    code, out = inmate.curl(f"https://localhost:{fake_api.port}/", "--noproxy", "")
    record("allowed name resolving to loopback", _http_blocked(code, out), out, Row("localhost", fake_api.port, "address"))

    # 10. Token-shaped secrets in the URL and in the body, to an allowed host.
    code, out = inmate.curl(f"{api}/v1/messages/count_tokens?key={AWS_KEY}", "-d", "{}")
    record("secret in the URL", _http_blocked(code, out), out,
           Row(host_gateway, fake_api.port, "secret", detector="AWS Access Key"))
    code, out = inmate.curl(f"{api}/v1/messages/count_tokens", "-d", json.dumps({"note": GITHUB_TOKEN}))
    record("secret in the body", _http_blocked(code, out), out,
           Row(host_gateway, fake_api.port, "secret", detector="GitHub Token"))

    # The allowed host works, with the real key injected on the way.
    code, out = inmate.curl(f"{api}/v1/messages/count_tokens", "-H", "content-type: application/json",
                            "-d", json.dumps({"model": "m", "messages": []}))
    counted = [r for r in fake_api.requests if r.path.startswith("/v1/messages/count_tokens")]

    proxied = [a for a in attempts if a.row is not None]
    blocked, audited = sum(a.blocked for a in attempts), sum(len(a.audited) == 1 for a in proxied)
    report(f"escape suite: {len(attempts)} attempts, {blocked} blocked, {audited} of {len(proxied)} at the proxy audited")
    for a in attempts:
        audit = "not at the proxy" if a.row is None else {0: "NOT AUDITED", 1: "audited"}.get(len(a.audited), "AUDITED TWICE")
        report(f"  {'blocked' if a.blocked else 'ESCAPED':8} {audit:16} {a.name}")
    assert (len(attempts), len(proxied)) == (ATTEMPTS, AT_THE_PROXY), [a.name for a in attempts]
    assert len({a.row for a in proxied}) == len(proxied), "two attempts expect the same audit row"
    assert [a.name for a in attempts if not a.blocked] == [], attempts
    assert [a.name for a in proxied if len(a.audited) != 1] == [], proxied
    assert (code, out.strip()) == (0, "200"), "the allowed host must be reachable"
    assert counted and counted[-1].headers["x-api-key"] == REAL_API_KEY
    audit_text = json.dumps(inmate.audit())
    assert AWS_KEY not in audit_text and GITHUB_TOKEN not in audit_text and REAL_API_KEY not in audit_text
