"""The egress proxy: a bottle's only way out, as a mitmproxy addon.

Its command is ``python -m bottle_egress_sidecar.main`` (which listens, checks
what the proxy starts from, then calls :func:`run`). It intercepts TLS with
the bottle's CA (``DIR/mitmproxy-ca.pem``, key and certificate, made by the
host) and denies by default. A CONNECT passes when its
host carries no secret (checked before the name is resolved), a rule allows its
host and port, the host is no DNS-over-HTTPS resolver, and every address the
name resolves to is public (or named by a rule literally). A request then passes
when nothing that names it (host, SNI, ALPN offers, Host header, method, header
names) carries a secret, its Host header and SNI name where it goes, it does not
look like DNS over HTTPS, and it carries no secret (where the policy's mode for
its host is "redact", each secret in the URL, the header values and the body is
replaced by a marker instead); on a credential route's host the client's own
credentials are stripped, and where the route says (its port, its path prefix)
the real one is put in.
Anything else gets a 403 saying what blocked it and how an operator allows it,
and every decision is a row in the audit log.

The policy file is reloaded when it changes, so ``bottle egress allow`` takes
effect on the next request. Only HTTP leaves: a tunnel that carries anything
else is not relayed (mitmproxy's raw TCP mode is off), and WebSocket messages
from the client are scanned for secrets like requests.

A request is scanned whole, so its body is held until it is complete, up to
``--request-body-limit`` (a 413 beyond). Responses are not inspected: server-sent
events, and bodies that are large or of unknown length, stream through as they
arrive, so the model's reply reaches the agent token by token and a download
costs the sidecar no more memory than a few buffers. An upstream that fails (no
connection, a TLS verification error, a 5xx or a 429) leaves an audit row
saying so: that is what the agent's retries are waiting on.
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
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mitmproxy import http, options
from mitmproxy.flow import Error
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.net.http.url import parse_authority, unparse
from mitmproxy.proxy import mode_servers
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.utils import human

from bottle_egress_sidecar.metering import (
    FIELDS, METERED, Ledger, SseMeter, Usage, budget_error, message_usage,
)
from bottle_sidecar import heap
from bottle_sidecar.audit import AuditLog, read_events
from bottle_egress_sidecar.policy import (
    DETECTORS, CredentialRoute, Policy, PolicyFile, Rule, doh_reason, forbidden_address, normalize_host,
    rule_for,
)
from bottle_sidecar.secrets_scan import Hit, Markers, Scanner

logger = logging.getLogger("bottle.egress")

AUTH_HEADERS = ("authorization", "x-api-key")  # stripped, besides a route's own header
DOH_REMEDY = "none: DNS over HTTPS is always blocked, since the sidecar resolves names itself, for allowed hosts only"
MiB = 1024 * 1024
STREAM_ABOVE = 2 * MiB  # a response body known to be at most this is held and sent whole; larger ones stream
REQUEST_TOO_LARGE = "request body over the egress proxy's limit"  # the flow.error of a refused request
UPSTREAM_FAILED = "bottle.upstream_failed"  # a flow.metadata key: the flow's upstream side failed
MODEL_API = "bottle.model_api"  # a flow.metadata key: the request goes to the model API (see metering)


@dataclass(eq=False)
class Blocked(Exception):
    """A request that may not leave: which check stopped it, why, and what an operator can do."""

    check: str  # "allowlist", "address", "doh", "fronting", "secret", "credential", "size", "internal"
    why: str  # one line, never a secret
    remedy: str
    detail: dict = field(default_factory=dict)
    status: int = 403
    answer: bytes | None = None  # the response body, JSON, when the client must read it as its API's own error


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

    def __init__(self, policies: PolicyFile, credentials: dict[str, str], audit: AuditLog, resolver: CheckedResolver,
                 *, body_limit: int):
        """*body_limit*: bytes a request body may have, as sent and once decoded (``--request-body-limit``)."""
        self.body_limit = body_limit
        self.policies = policies
        self.credentials = credentials
        self.audit = audit
        self.resolver = resolver
        self._scanner_policy: Policy | None = None
        self._scanner = Scanner()
        self._markers = Markers()  # for the proxy's life: a secret keeps its marker in every request
        # What the bottle used, in all its runs (from its audit log) and in this one (see metering).
        self.ledgers = {"bottle": Ledger(*metered_so_far(audit.path)), "run": Ledger()}

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        await self._decide(flow, self._admit_tunnel)

    async def request(self, flow: http.HTTPFlow) -> None:
        await self._decide(flow, self._admit_request)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message from the client is scanned like a request body: one with a secret
        is dropped, or where the host's mode is "redact" has its secrets replaced."""
        message = flow.websocket.messages[-1]
        if not message.from_client:
            return
        policy, request = self.policies.current(), flow.request
        scanner = self._scanner_for(policy)
        if policy.secret_mode(normalize_host(request.host), request.port, request.scheme) == "redact":
            message.content, hits = scanner.redact(message.content, "websocket message", self._markers)
            if hits:
                self._record("redacted", flow, **_redactions(hits), secret=True)
            return
        hit = scanner.scan(message.content, "websocket message")
        if hit is not None:
            message.drop()
            self._record("blocked", flow, reason=f"a secret: {hit}", detail={"check": "secret", **_hit_detail(hit)},
                         secret=True)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stream what must not wait in the sidecar; audit an upstream that answers with a failure.

        mitmproxy holds a response until its body is complete unless told to
        stream it: server-sent events (the Messages API's replies) would reach
        the agent only at their end, and a download would sit whole in memory.
        A 5xx or a 429 passes unchanged; its row says why the agent retries.
        """
        response = flow.response
        length = expected_http_body_size(flow.request, response)  # None: chunked; -1: until the connection closes
        events = response.headers.get("content-type", "").startswith("text/event-stream")
        if events or length is None or length < 0 or length > STREAM_ABOVE:
            response.stream = True
        if flow.metadata.get(MODEL_API) and response.status_code == 200:  # metered as it passes (see metering)
            if events:
                response.stream = SseMeter(lambda usage: self._metered(flow, usage))
            elif response.stream is not True:
                flow.metadata[METERED] = True
        if response.status_code >= 500 or response.status_code == 429:
            detail = {"status": response.status_code}
            if "retry-after" in response.headers:
                detail["retry_after"] = response.headers["retry-after"]
            self._record("upstream-status", flow, reason=f"upstream answered {response.status_code} {response.reason}",
                         detail=detail)

    def response(self, flow: http.HTTPFlow) -> None:
        """A whole Messages reply (not streamed): its usage is metered now."""
        if flow.metadata.get(METERED) and flow.response is not None:
            usage = message_usage(flow.response.content or b"")
            if usage is not None:
                self._metered(flow, usage)

    def _metered(self, flow: http.HTTPFlow, usage: Usage) -> None:
        policy = self.policies.current()
        cost = (policy.budget or policy.prices).cost(usage)  # no budget: counted, and priced all the same
        for ledger in self.ledgers.values():
            ledger.add(usage, cost)
        self._record(METERED, flow, reason=f"{usage.tokens} tokens ({usage.model or 'model not said'})",
                     detail={**usage.as_detail(), "usd": cost})

    def _check_budget(self, policy: Policy, flow: http.HTTPFlow) -> None:
        """Blocked, as the API answers an account out of credit, when a request to the model API would start
        past the bottle's budget."""
        budget = policy.budget
        if budget is None or not flow.metadata.get(MODEL_API):
            return
        ledger = self.ledgers[budget.per]
        why = budget.spent(ledger.tokens, ledger.usd)
        if why is not None:
            raise Blocked("budget", why, "raise the budget: `bottle answer` on the proposal, or `bottle egress "
                          f"budget {policy.bottle} --max-tokens N`",
                          {"tokens": ledger.tokens, "usd": round(ledger.usd, 6), "max_tokens": budget.max_tokens,
                           "max_usd": budget.max_usd, "per": budget.per},
                          status=400, answer=budget_error(policy.bottle, why))

    def error(self, flow: http.HTTPFlow) -> None:
        """A flow that failed: answer a request over the size limit; audit an upstream that failed.

        The request is answered here because :class:`BoundedHttpStream` sends
        whatever response this hook leaves on the flow. An upstream failure
        (no connection, TLS verification, a broken-off response) has no
        response to show, so without this row the audit log would say only
        "allowed" while the agent retries. A client that went away is not
        audited: nothing failed that an operator could change.
        """
        if flow.error.msg == REQUEST_TOO_LARGE:
            self._deny(flow, too_large(f"the request body is over the egress proxy's limit of "
                                      f"{_size(self.body_limit)}", self.body_limit))
        elif flow.metadata.get(UPSTREAM_FAILED):
            reason = self._without_credentials(flow.error.msg)
            self._record("upstream-error", flow, reason=f"the upstream connection failed: {reason}",
                         detail={"error": reason})

    def _without_credentials(self, text: str, limit: int = 300) -> str:
        """*text* with every credential value the sidecar holds taken out, at most *limit* characters:
        an error may quote what a broken upstream sent back, which could echo an injected header."""
        for value in self.credentials.values():
            text = text.replace(value, "[credential]")
        return text[:limit]

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
        self._refuse_secret_names(policy, [("host", flow.request.host)])
        host, port = normalize_host(flow.request.host), flow.request.port
        _refuse_doh(doh_reason(host))
        rule, addresses = await self._destination(policy, host, port, ("https", "http"))
        self._record("allowed", flow, reason=f"rule {rule.text!r}", detail={"rule": rule.text, "addresses": addresses})

    async def _admit_request(self, flow: http.HTTPFlow) -> None:
        """A request, plain or inside a tunnel. The credential goes to its route's place only, host, port and
        path; the client's own credential headers are dropped on every port and path of a route's host: the
        key's audience gets no value from the agent, only, where the route serves, the sidecar's."""
        policy = self.policies.current()
        request = flow.request
        self._refuse_secret_names(policy, _names(flow))
        host, port, scheme = normalize_host(request.host), request.port, request.scheme
        _refuse_fronting(flow)
        _refuse_doh(doh_reason(host, request.path, request.headers.get("content-type", ""),
                               request.headers.get("accept", "")))
        rule, addresses = await self._destination(policy, host, port, (scheme,))
        # A host the sidecar holds a credential for is the model API: metered and budgeted whatever the path
        # (a path spelled another way must not slip past the meter).
        flow.metadata[MODEL_API] = policy.route_at(host, port) is not None
        self._check_budget(policy, flow)
        injected = policy.credential_headers(host) if scheme == "https" else set()  # never a credential in clear text
        if injected:
            for name in injected | set(AUTH_HEADERS):
                request.headers.pop(name, None)
        route = policy.route_at(host, port) if injected else None
        if route is not None and not route.serves(port, request.path):
            route = None
        redacted = self._screen_secrets(flow, policy)
        if route is not None:
            secret = self.credentials.get(route.name)
            if secret is None:
                raise Blocked("credential", f"the credential {route.name} for {host} is not available to the sidecar",
                              f"restart the bottle with {route.name} set in the host's environment")
            request.headers[route.header] = route.header_value(secret)
        self._record("allowed", flow, reason=f"rule {rule.text!r}", detail={"rule": rule.text, "addresses": addresses})
        if redacted:
            self._record("redacted", flow, **_redactions(redacted))
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

    def _refuse_secret_names(self, policy: Policy, names: list[tuple[str, str | bytes]]) -> None:
        """Blocked if a name of the request (see :func:`_names`) carries a secret, whatever its host's mode:
        a name cannot be replaced by a marker (the request would go elsewhere, or mean something else).
        Checked first: before the host is resolved, since a DNS query would carry the secret out."""
        hit = self._scanner_for(policy).scan_names(
            (where, name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape"))
            for where, name in names)
        if hit is not None:
            raise Blocked("secret", f"the request carries what looks like a secret: {hit}",
                          f"take the secret out: in the {hit.location} it is never replaced by a marker, whatever "
                          f"on_secret says; if it is no secret, {_exemption(hit)}", _hit_detail(hit))

    def _screen_secrets(self, flow: http.HTTPFlow, policy: Policy) -> list[Hit]:
        """Blocked if the request carries a secret, unless its host's mode is "redact": then each
        secret in the URL's path, the headers and the body is replaced by its marker (see
        ``secrets_scan.Markers``) and the hits replaced are returned. A secret in the host name
        is blocked whatever the mode: replaced, it would send the request elsewhere."""
        request = flow.request
        host, port, scheme = normalize_host(request.host), request.port, request.scheme
        scanner = self._scanner_for(policy)
        url, body = request.url.encode(), decoded_body(request, self.body_limit)
        if policy.secret_mode(host, port, scheme) == "block":
            hit = scanner.scan_request(url, request.headers.fields, body)
            if hit is not None:
                raise Blocked("secret", f"the request carries what looks like a secret: {hit}",
                              _secret_remedy(hit, rule_for(host, port, scheme), policy.route_at(host, port)),
                              _hit_detail(hit))
            return []
        redacted = scanner.redact_request(url, request.headers.fields, body, self._markers)
        if not redacted.hits:
            return []
        origin = unparse(request.scheme, request.host, request.port, "").encode()
        if not redacted.url.startswith(origin):
            hit = next(hit for hit in redacted.hits if hit.location == "url" and hit.offset < len(origin))
            raise Blocked("secret", f"the request's host name carries what looks like a secret: {hit}",
                          "none: a secret in the host name cannot be replaced", _hit_detail(hit))
        if redacted.url != url:
            request.path = redacted.url[len(origin):].decode("utf-8", "surrogateescape")
        request.headers.fields = tuple(redacted.headers)
        if redacted.body != body:
            request.content = redacted.body  # encoded again as content-encoding says; content-length follows
        return redacted.hits

    def _scanner_for(self, policy: Policy) -> Scanner:
        if policy is not self._scanner_policy:
            patterns = [(f"secret_patterns[{index}]", regex) for index, regex in enumerate(policy.secret_patterns)]
            exempt = [route.placeholder for route in policy.credentials] + list(policy.exempt_values)
            self._scanner = Scanner(patterns, exempt, policy.exempt_detectors)
            self._scanner_policy = policy
        return self._scanner

    def _deny(self, flow: http.HTTPFlow, blocked: Blocked) -> None:
        request = flow.request
        target = request.authority if request.method == "CONNECT" else request.url.partition("?")[0]
        if blocked.answer is not None:
            flow.response = http.Response.make(blocked.status, blocked.answer, {"content-type": "application/json"})
        else:
            body = (f"bottle egress: blocked {request.method} {target}\nwhy: {blocked.why}\n"
                    f"to allow it: {blocked.remedy}\n")
            flow.response = http.Response.make(blocked.status, body, {"content-type": "text/plain; charset=utf-8"})
        self._record("blocked", flow, reason=blocked.why, detail={"check": blocked.check, **blocked.detail},
                     secret=blocked.check == "secret")

    def _record(self, decision: str, flow: http.HTTPFlow, *, reason: str, detail: dict, secret=False) -> None:
        """One audit row for *flow*. Its path is kept without the query; for a flow that carried a
        *secret*, not at all, and its host and method with the secrets in them replaced by markers
        (names are checked before anything else: a row for a flow with a secret in one is this row)."""
        request = flow.request
        host, method = normalize_host(request.host), request.method
        if secret:
            host = self._redacted(request.host, host)
            method = self._redacted(request.data.method.decode("utf-8", "surrogateescape"), method)
        path = None if secret or request.method == "CONNECT" else request.path.partition("?")[0]
        self.audit.record(
            "egress", decision, method=method, host=host, port=request.port, path=path, reason=reason, detail=detail,
        )

    def _redacted(self, sent: str, shown: str) -> str:
        """A name for the row of a flow that carried a secret: as *sent* with its secrets replaced by
        markers, if it held one; else as *shown* (a host in lower case, a method in upper case, as rows
        have them) with its secrets replaced: either form may be the one a detector matches."""
        scanner = self._scanner_for(self.policies.current())
        redacted = scanner.redact_name(sent, self._markers)
        return redacted if redacted != sent else scanner.redact_name(shown, self._markers)

    def policy_reloaded(self, message: str, failed: bool) -> None:
        print(f"bottle-egress: policy {message}", file=sys.stderr, flush=True)
        self.audit.record("egress", "policy-rejected" if failed else "policy-reloaded", reason=message)


def metered_so_far(audit_path: str) -> tuple[int, float]:
    """The tokens and estimated dollars of every reply the bottle's audit log has metered (its earlier runs)."""
    tokens, usd = 0, 0.0
    for event in read_events(audit_path, decision=METERED):
        if event["source"] == "egress":
            detail = event["detail"] or {}
            tokens += sum(int(detail.get(name) or 0) for name in FIELDS)
            usd += float(detail.get("usd") or 0)
    return tokens, usd


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


def _names(flow: http.HTTPFlow) -> list[tuple[str, str | bytes]]:
    """What names a request's destination and form rather than what it carries, each with where it is:
    the host (as the client wrote it), the TLS SNI and ALPN offers (mitmproxy sends them on upstream),
    the Host header, the method (as sent, and in upper case as mitmproxy shows it and rows keep it)
    and every header's name."""
    request, client = flow.request, flow.client_conn
    names = [("host", request.host), ("method", request.data.method), ("method", request.method)]
    if client.sni:
        names.append(("TLS SNI", client.sni))
    if request.host_header:
        names.append(("Host header", request.host_header))
    names += [("TLS ALPN offer", offer) for offer in client.alpn_offers or ()]
    return names + [("header name", name) for name, _ in request.headers.fields]


def _allow_hint(bottle: str, rule: str) -> str:
    return f"bottle egress allow {bottle} {rule}  (or add {json.dumps(rule)} to the bottle profile's [egress] allow)"


def _hit_detail(hit: Hit) -> dict:
    return {"detector": hit.detector, "location": hit.location, "offset": hit.offset}


def _exemption(hit: Hit) -> str:
    """How a profile says what *hit* found is no secret."""
    if hit.detector in DETECTORS:
        exempt = f'[egress] secret_exempt = {{ detectors = ["{hit.detector}"] }}'
    else:  # the profile's own pattern
        exempt = f"a narrower pattern in [egress] secret_patterns (this is {hit.detector})"
    return f"exempt it in the bottle profile with {exempt}, or its exact value in [egress] secret_exempt.values"


def _secret_remedy(hit: Hit, rule: str, route: CredentialRoute | None) -> str:
    """What lets such a request go: the secret taken out, an exemption, or the host's mode "redact"."""
    if route is not None and route.on_secret:
        redact = f'on_secret = "redact" in the [[credentials]] route for {route.host}'
    else:
        redact = f'[egress] on_secret = {{ {json.dumps(rule)} = "redact" }}'
    return (f"take the secret out (API credentials belong in a credential route, which the sidecar injects); "
            f"if it is no secret, {_exemption(hit)}; or have each secret to this host replaced by a marker and "
            f"the request sent on, with {redact}")


def _redactions(hits: list[Hit]) -> dict:
    """The audit row of secrets replaced: by detector and location, how many; never the secrets."""
    counts: dict[tuple[str, str], int] = {}
    for hit in hits:
        counts[hit.detector, hit.location] = counts.get((hit.detector, hit.location), 0) + 1
    replaced = [{"detector": detector, "location": location, "count": count}
                for (detector, location), count in counts.items()]
    reason = "secrets replaced by markers: " + ", ".join(
        f"{item['detector']} in {item['location']} ({item['count']})" for item in replaced)
    return {"reason": reason, "detail": {"check": "secret", "redactions": replaced}}


def _size(size: int) -> str:
    return f"{size / MiB:g} MiB ({size} bytes)"


#: Content encodings a request body may declare: each is undone with a bound on what it inflates to.
DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decoded_body(request: http.Request, limit: int) -> bytes:
    """The request's body with its declared content-encoding undone, for scanning: at most *limit* bytes.

    The size limit counts the body as sent; compressed, a few KiB can inflate
    to gigabytes in the sidecar's memory (mitmproxy's own decoding has no
    bound), so a body that decodes past *limit* gets a 413. An encoding that
    cannot be undone with a bound here (br, zstd, several in a row) or a body
    that does not decode as declared is refused (415): scanning its compressed
    bytes would see no secret at all. Clients send request bodies plain or
    gzipped; Claude Code sends them plain.
    """
    raw = request.raw_content or b""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in DECODERS:
        raise Blocked("encoding", f"the request body's content-encoding {encoding!r} cannot be scanned here",
                      "send the body plain or with gzip or deflate", {"encoding": encoding}, status=415)
    inflater = zlib.decompressobj(DECODERS[encoding])
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        if encoding != "deflate":
            raise Blocked("encoding", f"the request body does not decode as {encoding}", "send what it declares",
                          {"encoding": encoding}, status=415) from None
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" is often sent without zlib's header
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise Blocked("encoding", "the request body does not decode as deflate", "send what it declares",
                          {"encoding": encoding}, status=415) from None
    if len(body) > limit:
        raise too_large(f"the request body decodes ({encoding}) to more than the egress proxy's limit of "
                        f"{_size(limit)}", limit, encoding=encoding)
    return body


def too_large(why: str, limit: int, **detail) -> Blocked:
    """The 413 for a request body over *limit*, as sent or once decoded."""
    return Blocked("size", why, "none for this request: send less at once (the limit is the egress proxy's "
                   "--request-body-limit)", {"limit": limit, **detail}, status=413)


class BoundedHttpStream(http_layers.HttpStream):
    """mitmproxy's HTTP stream, with ``body_size_limit`` for request bodies only, refused our way.

    mitmproxy applies that option to responses too (a download over it fails
    with 502 before an addon could stream it) and refuses a request over it with
    a page of its own, closing the connection while the client may still be
    sending, which the client sees as a reset. Here a request over the limit
    gets the response the ``error`` hook leaves on the flow (the egress addon's
    413), the rest of its body is read and dropped, then the connection is
    closed; responses are never limited (the addon streams the large ones).

    It also marks a flow whose upstream side failed: mitmproxy's ``error`` hook
    does not tell that apart from a client that went away.
    """

    def check_body_size(self, request: bool):
        """Called on request and response headers and for each body chunk mitmproxy holds; True: refused."""
        limit = human.parse_size(self.context.options.body_size_limit)
        if not request or limit is None:
            return False
        size = len(self.request_body_buf) or expected_http_body_size(self.flow.request)  # None: chunked
        if size is None or size <= limit:
            return False
        self.request_body_buf.clear()
        self.client_state = self.server_state = self.state_errored  # drops the rest of the body
        self.flow.error = Error(REQUEST_TOO_LARGE)
        yield http_layers.HttpErrorHook(self.flow)
        self.flow.live = False
        response, client = self.flow.response, self.context.client
        if response is None:  # the addon's hook failed: mitmproxy's own refusal
            refusal = http_layers.ResponseProtocolError(self.stream_id, REQUEST_TOO_LARGE,
                                                         http_layers.ErrorCode.REQUEST_TOO_LARGE)
            yield http_layers.SendHttp(refusal, client)
            return True
        # Closed once the body is in: a client that waited for "100 Continue" never sends it, and a reused
        # connection would take its next request for the rest of this body.
        response.headers["connection"] = "close"
        yield http_layers.SendHttp(http_layers.ResponseHeaders(self.stream_id, response, end_stream=False), client)
        yield http_layers.SendHttp(http_layers.ResponseData(self.stream_id, response.raw_content), client)
        yield http_layers.SendHttp(http_layers.ResponseEndOfMessage(self.stream_id), client)
        return True

    def handle_protocol_error(self, event):
        if isinstance(event, http_layers.ResponseProtocolError):  # from the upstream connection, or making it
            self.flow.metadata[UPSTREAM_FAILED] = True
        yield from super().handle_protocol_error(event)




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


def proxy_master(opts: options.Options):
    """A mitmproxy Master with the addons a regular, TLS-intercepting proxy needs and no others.

    mitmdump's DumpMaster loads some thirty addons (playback, HAR export, the
    onboarding app, map/modify rules, scripts, the flow dumper and its content
    views) that this proxy leaves switched off; they cost a third of its
    resident memory and a hook call each per event. What stays, in mitmproxy's
    own order: Block (refuses clients from public addresses), DisableH2C (no
    HTTP/2 cleartext upgrade), Proxyserver, NextLayer, TlsConfig (the bottle's
    CA, upstream verification) and ErrorCheck (a start-up error such as a busy
    port ends the process, repeated on stderr). Its HTTP streams are
    :class:`BoundedHttpStream`.
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

    http_layers.HttpStream = BoundedHttpStream  # what mitmproxy's HTTP layer makes a stream of
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


class HeapAddon:
    """Hands the memory of large bodies back once the flows that held them are done (see ``heap``):
    the proxy holds each request body whole to scan it, and a response body up to STREAM_ABOVE.

    A kept-alive connection holds its last flow until its next request or its end, so a trim follows the
    end of a flow that held a large body and again the end of its connection.
    """

    def __init__(self, trimmer: heap.Trimmer):
        self._trimmer = trimmer
        self._holding: dict[str, int] = {}  # client connection id: the largest body one of its flows held

    def response(self, flow: http.HTTPFlow) -> None:
        held = len(flow.request.raw_content or b"")
        if flow.response is not None and not flow.response.stream:
            held += len(flow.response.raw_content or b"")
        if held >= heap.LARGE:
            self._holding[flow.client_conn.id] = held
        self._trimmer.finished(held)

    error = response

    def client_disconnected(self, client) -> None:
        self._trimmer.finished(self._holding.pop(client.id, 0))


def run(args: argparse.Namespace, policies: PolicyFile, credentials: dict[str, str], audit: AuditLog,
        listener: socket.socket) -> None:
    """Serve on *listener* (bound by ``main``, which checked the rest) until SIGTERM or SIGINT."""
    mode_servers.RegularInstance.listen = _listening_on(listener)
    asyncio.run(serve(args, policies, credentials, audit))


def _listening_on(listener: socket.socket):
    """mitmproxy's regular-mode listen, on *listener* instead of a socket of its own: the connections that
    came while mitmproxy loaded are queued on it."""
    async def listen(self, host: str, port: int) -> list[asyncio.Server]:
        return [await asyncio.start_server(self.handle_stream, sock=listener)]

    return listen


async def serve(args: argparse.Namespace, policies: PolicyFile, credentials: dict[str, str], audit: AuditLog) -> None:
    master = proxy_master(options.Options())
    loop = asyncio.get_running_loop()
    addon = EgressAddon(policies, credentials, audit, CheckedResolver(loop, policies),
                        body_limit=human.parse_size(args.request_body_limit))
    policies.report = addon.policy_reloaded
    master.addons.add(addon, HeapAddon(heap.Trimmer(loop)))
    master.options.update(
        mode=["regular"],
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        confdir=args.confdir,
        ssl_insecure=False,
        ssl_verify_upstream_trusted_ca=upstream_trust(args.confdir, args.upstream_extra_ca),
        connection_strategy="lazy",  # check a request before connecting anywhere for it
        rawtcp=False,  # what is not HTTP is not relayed (it could not be scanned)
        body_size_limit=args.request_body_limit,  # for requests only: see BoundedHttpStream
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, master.shutdown)
    await master.run()
