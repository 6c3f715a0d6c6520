"""The egress proxy: a bottle's only way out, as a mitmproxy addon and its command line.

Run in the sidecar as::

    python -m bottle_sidecar.egress --listen-host 0.0.0.0 --listen-port 3128 \\
        --confdir DIR --policy FILE --credentials FILE --audit FILE

It intercepts TLS with the bottle's CA (``DIR/mitmproxy-ca.pem``, key and
certificate, made by the host) and denies by default. A CONNECT passes when a
rule allows its host and port, the host is no DNS-over-HTTPS resolver, and
every address the name resolves to is public (or named by a rule literally).
A request then passes when its Host header and SNI name where it goes,
does not look like DNS over HTTPS, and carries no secret; for a credential
route's host the client's own credentials are stripped and the real one put in.
Anything else gets a 403 saying what blocked it and how an operator allows it,
and every decision is a row in the audit log.

The policy file is reloaded when it changes, so ``bottle egress allow`` takes
effect on the next request. Only HTTP leaves: a tunnel that carries anything
else is not relayed (mitmproxy's raw TCP mode is off), and WebSocket messages
from the client are scanned for secrets like requests.
"""

import argparse
import asyncio
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from mitmproxy import ctx, http, options
from mitmproxy.net.http.url import parse_authority

from .audit import AuditLog
from .policy import Policy, PolicyError, PolicyFile, Rule, doh_reason, forbidden_address, normalize_host, rule_for
from .secrets_scan import Hit, Scanner
from .startup import StartupError, load_credentials

logger = logging.getLogger("bottle.egress")

CA_FILE = "mitmproxy-ca.pem"
AUTH_HEADERS = ("authorization", "x-api-key")  # stripped, besides a route's own header
DOH_REMEDY = "none: DNS over HTTPS is always blocked, since the sidecar resolves names itself, for allowed hosts only"


@dataclass(eq=False)
class Blocked(Exception):
    """A request that may not leave: which check stopped it, why, and what an operator can do."""

    check: str  # "allowlist", "address", "doh", "fronting", "secret", "credential", "internal"
    why: str  # one line, never a secret
    remedy: str
    detail: dict = field(default_factory=dict)


class ForbiddenAddress(OSError):
    """A host name that leads to an address only a literal rule may reach."""

    def __init__(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, reason: str):
        super().__init__(f"{host} resolves to {address}, {reason}")
        self.address = address


class CheckedResolver:
    """Resolves upstream host names, refusing those that lead to a forbidden address.

    The addon asks before it lets a request through, to answer 403 with the
    reason; and the event loop's ``getaddrinfo`` is routed through here, so
    mitmproxy opens connections only to addresses that passed the check: a name
    cannot rebind to 127.0.0.1 between the check and the connect, and a
    connection reused for later requests stays on its checked address. Answers
    are kept *ttl* seconds, so the connect reuses the lookup the check made.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, policies: PolicyFile, ttl: float = 30.0):
        self.policies = policies
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list]] = {}
        self._getaddrinfo = loop.getaddrinfo
        loop.getaddrinfo = self.getaddrinfo

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """The loop's getaddrinfo, checked. Passive lookups are for listening sockets: not ours to judge."""
        if flags & socket.AI_PASSIVE or host is None:
            return await self._getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)
        infos = await self.resolve(host, int(port))
        return [info for info in infos if family in (0, info[0])]

    async def resolve(self, host: str, port: int) -> list:
        """getaddrinfo results for *host*:*port*; ForbiddenAddress if any address is off limits."""
        now = time.monotonic()
        expires, infos = self._cache.get((host, port), (0.0, []))
        if expires <= now:
            infos = await self._getaddrinfo(host, port, type=socket.SOCK_STREAM)
            if len(self._cache) > 1024:
                self._cache = {key: value for key, value in self._cache.items() if value[0] > now}
            self._cache[(host, port)] = (now + self.ttl, infos)
        policy = self.policies.current()
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            reason = forbidden_address(address)
            if reason and not policy.literal_allows(address, port):
                raise ForbiddenAddress(host, address, reason)
        return infos


class EgressAddon:
    """The mitmproxy addon: the checks, the credential routes, the audit rows."""

    def __init__(self, policies: PolicyFile, credentials: dict[str, str], audit: AuditLog, resolver: CheckedResolver):
        self.policies = policies
        self.credentials = credentials
        self.audit = audit
        self.resolver = resolver
        self._scanner_policy: Policy | None = None
        self._scanner = Scanner()

    def running(self) -> None:
        host, port = ctx.master.addons.get("proxyserver").listen_addrs()[0][:2]
        print(f"bottle-egress: listening on {host}:{port}", flush=True)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        await self._decide(flow, self._admit_tunnel)

    async def request(self, flow: http.HTTPFlow) -> None:
        await self._decide(flow, self._admit_request)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message from the client is scanned like a request body; a hit is dropped."""
        message = flow.websocket.messages[-1]
        if not message.from_client:
            return
        hit = self._scanner_for(self.policies.current()).scan(message.content, "websocket message")
        if hit is not None:
            message.drop()
            self._record("blocked", flow, reason=f"a secret: {hit}", detail={"check": "secret", **_hit_detail(hit)},
                         redact_path=True)

    async def _decide(self, flow: http.HTTPFlow, admit: Callable[[http.HTTPFlow], Awaitable[None]]) -> None:
        try:
            await admit(flow)
        except Blocked as blocked:
            self._deny(flow, blocked)
        except Exception:  # fail closed: a bug in a check must not let the request through
            logger.exception("egress check failed")
            self._deny(flow, Blocked("internal", "the egress proxy failed while checking this request",
                                     "none: this is a bug in the egress proxy; its log has the details"))

    async def _admit_tunnel(self, flow: http.HTTPFlow) -> None:
        """CONNECT host:port: what the client will speak inside is not known yet, so either scheme may allow it."""
        policy = self.policies.current()
        host, port = normalize_host(flow.request.host), flow.request.port
        _refuse_doh(doh_reason(host))
        rule, addresses = await self._destination(policy, host, port, ("https", "http"))
        self._record("allowed", flow, reason=f"rule {rule.text!r}", detail={"rule": rule.text, "addresses": addresses})

    async def _admit_request(self, flow: http.HTTPFlow) -> None:
        policy = self.policies.current()
        request = flow.request
        host, port, scheme = normalize_host(request.host), request.port, request.scheme
        _refuse_fronting(flow)
        _refuse_doh(doh_reason(host, request.path, request.headers.get("content-type", ""),
                               request.headers.get("accept", "")))
        rule, addresses = await self._destination(policy, host, port, (scheme,))
        route = policy.route_for(host) if scheme == "https" else None  # never a real credential in clear text
        if route is not None:
            for name in {route.header, *AUTH_HEADERS}:
                request.headers.pop(name, None)
        hit = self._scanner_for(policy).scan_request(
            request.url.encode(), request.headers.fields, request.get_content(strict=False) or b""
        )
        if hit is not None:
            raise Blocked("secret", f"the request carries what looks like a secret: {hit}",
                          "none for this request: take the secret out (API credentials belong in a credential "
                          "route, which the sidecar injects)", _hit_detail(hit))
        if route is not None:
            secret = self.credentials.get(route.name)
            if secret is None:
                raise Blocked("credential", f"the credential {route.name} for {host} is not available to the sidecar",
                              f"restart the bottle with {route.name} set in the host's environment")
            request.headers[route.header] = route.header_value(secret)
        self._record("allowed", flow, reason=f"rule {rule.text!r}", detail={"rule": rule.text, "addresses": addresses})
        if route is not None:
            self._record("injected", flow, reason=f"credential {route.name} in {route.header}",
                         detail={"credential": route.name, "header": route.header})

    async def _destination(
        self, policy: Policy, host: str, port: int, schemes: tuple[str, ...]
    ) -> tuple[Rule, list[str]]:
        """The rule allowing host:port and the addresses it resolved to; Blocked if there is none or
        an address is forbidden. A name that does not resolve passes: its connection fails on its own."""
        rule = next(filter(None, (policy.match(host, port, scheme) for scheme in schemes)), None)
        if rule is None:
            wanted = rule_for(host, port, schemes[0])
            over = " over plain HTTP" if schemes == ("http",) else ""
            raise Blocked("allowlist", f"no egress rule allows {wanted.removeprefix('http://')}{over}",
                          _allow_hint(policy.bottle, wanted))
        try:
            infos = await self.resolver.resolve(host, port)
        except ForbiddenAddress as err:
            raise Blocked("address", str(err), "only a rule naming the address itself reaches it: "
                          + _allow_hint(policy.bottle, rule_for(str(err.address), port, schemes[0])),
                          {"address": str(err.address)}) from None
        except OSError:
            infos = []
        return rule, sorted({info[4][0] for info in infos})

    def _scanner_for(self, policy: Policy) -> Scanner:
        if policy is not self._scanner_policy:
            patterns = [(f"secret_patterns[{index}]", regex) for index, regex in enumerate(policy.secret_patterns)]
            self._scanner = Scanner(patterns, [route.placeholder for route in policy.credentials])
            self._scanner_policy = policy
        return self._scanner

    def _deny(self, flow: http.HTTPFlow, blocked: Blocked) -> None:
        request = flow.request
        target = request.authority if request.method == "CONNECT" else request.url.partition("?")[0]
        body = f"bottle egress: blocked {request.method} {target}\nwhy: {blocked.why}\nto allow it: {blocked.remedy}\n"
        flow.response = http.Response.make(403, body, {"content-type": "text/plain; charset=utf-8"})
        self._record("blocked", flow, reason=blocked.why, detail={"check": blocked.check, **blocked.detail},
                     redact_path=blocked.check == "secret")

    def _record(self, decision: str, flow: http.HTTPFlow, *, reason: str, detail: dict, redact_path=False) -> None:
        """One audit row for *flow*. Its path is kept without the query, and not at all
        (*redact_path*) when it may hold a secret."""
        request = flow.request
        path = None if redact_path or request.method == "CONNECT" else request.path.partition("?")[0]
        self.audit.record(
            "egress", decision, method=request.method, host=normalize_host(request.host), port=request.port,
            path=path, reason=reason, detail=detail,
        )

    def policy_reloaded(self, message: str, failed: bool) -> None:
        print(f"bottle-egress: policy {message}", file=sys.stderr, flush=True)
        self.audit.record("egress", "policy-rejected" if failed else "policy-reloaded", reason=message)


def _refuse_doh(reason: str | None) -> None:
    if reason is not None:
        raise Blocked("doh", reason, DOH_REMEDY)


def _refuse_fronting(flow: http.HTTPFlow) -> None:
    """The request must name the host it goes to, in its Host header and its TLS SNI.

    Inside a tunnel mitmproxy sends a request to the tunnel's host, but passes
    on the Host header (or :authority) as the client wrote it and uses the
    client's SNI upstream: either could reach another site behind a shared
    front (domain fronting). In plain HTTP the Host header could disagree with
    the URL in the same way.
    """
    request = flow.request
    claims = []
    if flow.client_conn.sni:
        claims.append(("the TLS SNI", flow.client_conn.sni, None))
    if request.host_header:
        claims.append(("the Host header", *parse_authority(request.host_header, check=False)))
    host = normalize_host(request.host)
    for what, name, port in claims:
        if normalize_host(name) != host or port not in (None, request.port):
            claimed = name if port is None else f"{name}:{port}"
            raise Blocked("fronting", f"{what} names {claimed} but the request goes to {host}:{request.port}",
                          "none: a request must name the host it goes to, in its Host header and SNI",
                          {"claimed": claimed})


def _allow_hint(bottle: str, rule: str) -> str:
    return f"bottle egress allow {bottle} {rule}  (or add {json.dumps(rule)} to the bottle profile's [egress] allow)"


def _hit_detail(hit: Hit) -> dict:
    return {"detector": hit.detector, "location": hit.location, "offset": hit.offset}




def check_ca(confdir: str) -> None:
    """The bottle's CA must be there: mitmproxy would otherwise make a new one the sandbox does not trust."""
    path = os.path.join(confdir, CA_FILE)
    try:
        with open(path, "rb") as file:
            pem = file.read()
        load_pem_private_key(pem, None)
        x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError, TypeError) as err:
        raise StartupError(f"cannot read the bottle's CA (key and certificate) from {path}: {err}") from None


def upstream_trust(confdir: str, extra: str | None) -> str | None:
    """A bundle of the public CAs mitmproxy trusts by default plus *extra*.

    mitmproxy's option replaces its default trust; an operator adding the CA
    of one internal service must not lose every public host.
    """
    if extra is None:
        return None
    import certifi

    bundle = os.path.join(confdir, "upstream-trust.pem")
    with open(bundle, "wb") as out:
        for source in (certifi.where(), extra):
            with open(source, "rb") as pem:
                out.write(pem.read().rstrip(b"\n") + b"\n")
    return bundle


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bottle_sidecar.egress", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=3128, help="0 picks a free port (printed when ready)")
    parser.add_argument("--confdir", required=True, help=f"holds {CA_FILE}, the bottle's CA key and certificate")
    parser.add_argument("--policy", required=True, help="the egress policy (JSON), reloaded when it changes")
    parser.add_argument("--credentials", help="credential values as JSON {name: value}, mode 0600")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    parser.add_argument(
        "--upstream-extra-ca", help="CA certificates (PEM) trusted upstream besides the usual public ones"
    )
    return parser.parse_args(argv)


def proxy_master(opts: options.Options):
    """A mitmproxy Master with the addons a regular, TLS-intercepting proxy needs and no others.

    mitmdump's DumpMaster loads some thirty addons (playback, HAR export, the
    onboarding app, map/modify rules, scripts, the flow dumper and its content
    views) that this proxy leaves switched off; they cost a third of its
    resident memory and a hook call each per event. What stays, in mitmproxy's
    own order: Block (refuses clients from public addresses), DisableH2C (no
    HTTP/2 cleartext upgrade), Proxyserver, NextLayer, TlsConfig (the bottle's
    CA, upstream verification) and ErrorCheck (a start-up error such as a busy
    port ends the process, repeated on stderr).
    """
    if "mitmproxy.addons" not in sys.modules:
        # mitmproxy/addons/__init__.py imports every addon mitmproxy has, to list
        # the defaults. Register the package without running it, so that only the
        # addons imported here (and what they import) are loaded.
        import mitmproxy

        spec = importlib.util.find_spec("mitmproxy.addons")
        sys.modules[spec.name] = mitmproxy.addons = importlib.util.module_from_spec(spec)
    from mitmproxy.addons import block, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
    from mitmproxy.master import Master

    master = Master(opts)
    master.addons.add(
        block.Block(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        errorcheck.ErrorCheck(repeat_errors_on_stderr=True),
    )
    return master


async def serve(args: argparse.Namespace, policies: PolicyFile, credentials: dict[str, str], audit: AuditLog) -> None:
    master = proxy_master(options.Options())
    loop = asyncio.get_running_loop()
    addon = EgressAddon(policies, credentials, audit, CheckedResolver(loop, policies))
    policies.report = addon.policy_reloaded
    master.addons.add(addon)
    master.options.update(
        mode=["regular"],
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        confdir=args.confdir,
        ssl_insecure=False,
        ssl_verify_upstream_trusted_ca=upstream_trust(args.confdir, args.upstream_extra_ca),
        connection_strategy="lazy",  # check a request before connecting anywhere for it
        rawtcp=False,  # what is not HTTP is not relayed (it could not be scanned)
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, master.shutdown)
    await master.run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
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
    try:
        asyncio.run(serve(args, policies, credentials, audit))
    finally:
        audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
