"""The egress policy: what a bottle may reach, and what no allow rule reaches by name.

The host writes the policy as JSON::

    {"bottle": "SLUG",
     "allow": ["api.anthropic.com", "*.github.com", "http://mirror.local:8080", "10.1.2.3:5432"],
     "credentials": [{"host": "api.anthropic.com", "port": 443, "path": "/v1/", "header": "x-api-key",
                      "scheme": "", "name": "ANTHROPIC_API_KEY", "placeholder": "...", "on_secret": "redact"}],
     "secret_patterns": ["regex", ...],
     "on_secret": [{"rule": "api.anthropic.com", "mode": "redact"}, {"rule": "*.corp.example", "mode": "block"}],
     "secret_exempt": {"detectors": ["JSON Web Token"], "values": ["a token-shaped test fixture"]}}

and the egress proxy reads it, again whenever the file changes (``PolicyFile``),
so that ``bottle egress allow`` works on a running bottle. The rule parser is
public because the host validates a profile's ``[egress] allow`` with it: a rule
the proxy could not read is an error at ``bottle run``, not a silent deny.

What a secret found in a request does is its host's *mode*: ``block`` (a 403,
the default) or ``redact`` (each secret replaced by a marker, the request goes
on). A credential route's own ``on_secret`` decides for its host and port;
otherwise the last ``on_secret`` entry whose rule matches, else ``block``.
``secret_exempt`` names detectors that are not run and values that are no secret.

A credential route is one place: a host, a port (443 unless it says) and
optionally a path prefix. The credential goes there only (``CredentialRoute.serves``);
another port of the same host may be another server, and one that echoes
the headers it gets would hand the credential to the agent.

Stdlib only: the host imports this module, and it has no mitmproxy.
"""

import ipaddress
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from bottle_egress_sidecar.metering import Budget
from bottle_sidecar.secrets_scan import detector_id

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"https": 443, "http": 80}
EXPECTED = (
    "expected HOST, *.SUFFIX, HOST:PORT, http://HOST[:PORT], "
    "or an IP address or CIDR with an optional :PORT ([ADDRESS]:PORT for IPv6)"
)
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


class RuleError(ValueError):
    """An allow rule that cannot be read; the message names the rule and the syntax."""


class PolicyError(ValueError):
    """A policy file that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class Rule:
    """One allow rule: a destination (host, ``*.suffix`` or network), a port, a scheme."""

    text: str
    scheme: str  # "https" (a CONNECT tunnel, TLS inside) or "http" (plain HTTP)
    port: int
    host: str = ""  # an exact name, or for a wildcard the suffix with its dot: ".example.com"
    wildcard: bool = False
    network: Network | None = None

    def matches(self, host: str, port: int, scheme: str) -> bool:
        if port != self.port or scheme != self.scheme:
            return False
        if self.network is not None:
            address = parse_address(host)
            return address is not None and address in self.network
        name = normalize_host(host)
        return name.endswith(self.host) if self.wildcard else name == self.host

    def names_address(self, address: Address, port: int) -> bool:
        """Whether this rule names *address* literally (as an IP or a CIDR) on *port*."""
        return self.network is not None and port == self.port and address in self.network


def normalize_host(host: str) -> str:
    """A host as rules compare it: lower case, no trailing dot, no IPv6 brackets."""
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def parse_address(host: str) -> Address | None:
    """*host* as an IP address, or None when it is a name."""
    try:
        return ipaddress.ip_address(normalize_host(host))
    except ValueError:
        return None


def parse_rule(text: str) -> Rule:
    """Read one allow rule.

    ``host`` allows HTTPS to that exact host on 443; ``*.suffix`` any subdomain
    of suffix (not suffix itself); ``host:port`` HTTPS on another port;
    ``http://host[:port]`` plain HTTP (port 80 by default). An IP address or a
    CIDR, optionally with ``:port`` (``[addr]:port`` for IPv6), allows that
    address, and is the only kind of rule that reaches a private, loopback or
    other non-public address (see ``forbidden_address``).
    """

    def fail(what: str) -> RuleError:
        return RuleError(f"egress rule {text!r}: {what}; {EXPECTED}")

    if not isinstance(text, str):
        raise RuleError(f"egress rule {text!r}: not a string; {EXPECTED}")
    rest = text.strip().lower()
    scheme = "https"
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme not in DEFAULT_PORTS:
            raise fail(f"unknown scheme {scheme + '://'!r}")
    if not rest:
        raise fail("no host")
    host, port_text = _split_port(rest, fail)
    if port_text is None:
        port = DEFAULT_PORTS[scheme]
    elif port_text.isdigit() and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        raise fail(f"{port_text!r} is not a port (1-65535)")
    network = _parse_network(host, fail)
    if network is not None:
        return Rule(text.strip(), scheme, port, network=network)
    if rest.startswith("["):
        raise fail(f"{host!r} in brackets is not an IPv6 address")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        raise fail("a wildcard must be the whole first label, as in *.example.com")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise fail(f"{name!r} is not a host name or an IP address")
    return Rule(text.strip(), scheme, port, host="." + name if wildcard else name, wildcard=wildcard)


def _split_port(rest: str, fail: Callable[[str], RuleError]) -> tuple[str, str | None]:
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise fail("'[' without ']'")
        if after and not after.startswith(":"):
            raise fail(f"{after!r} after ']'")
        return host, after[1:] if after else None
    if rest.count(":") > 1:  # a bare IPv6 address or CIDR: no port
        return rest, None
    host, colon, port = rest.partition(":")
    return host, port if colon else None


def _parse_network(host: str, fail: Callable[[str], RuleError]) -> Network | None:
    if "/" in host:
        try:
            return ipaddress.ip_network(host)
        except ValueError as err:
            raise fail(f"{host!r} is not a CIDR ({err}); a rule has no path") from None
    address = parse_address(host)
    return None if address is None else ipaddress.ip_network(address)


def rule_for(host: str, port: int, scheme: str) -> str:
    """The shortest rule that allows exactly *host*:*port* over *scheme*: what to tell an operator."""
    address = parse_address(host)
    name = f"[{address}]" if address is not None and address.version == 6 else normalize_host(host)
    default = port == DEFAULT_PORTS[scheme]
    target = name if default else f"{name}:{port}"
    return f"http://{target}" if scheme == "http" else target


_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def forbidden_address(address: Address | str) -> str | None:
    """Why no host name may lead to *address*, or None for a public address.

    Only a rule naming the address (or a CIDR holding it) reaches it; see
    ``Policy.literal_allows``. IPv6 forms that carry an IPv4 address
    (IPv4-mapped, NAT64, 6to4) are judged by that address.
    """
    if isinstance(address, str):
        address = ipaddress.ip_address(address)
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = forbidden_address(embedded)
        return reason and f"{reason} ({embedded} inside {address})"
    if address in _METADATA:
        return "a cloud metadata address"
    for attribute, reason in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
    ):
        if getattr(address, attribute):
            return reason
    if address in _SHARED:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


# Public DNS-over-HTTPS resolvers, by name and by address. A process that asks
# one of them for DNS learns addresses the sidecar never vetted and can smuggle
# data out in its queries, so they stay blocked whatever the allowlist says.
DOH_HOSTS = frozenset(
    {
        "dns.google", "dns.google.com", "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
        "cloudflare-dns.com", "mozilla.cloudflare-dns.com", "chrome.cloudflare-dns.com",
        "security.cloudflare-dns.com", "family.cloudflare-dns.com", "one.one.one.one",
        "1dot1dot1dot1.cloudflare-dns.com", "1.1.1.1", "1.0.0.1", "1.1.1.2", "1.1.1.3",
        "2606:4700:4700::1111", "2606:4700:4700::1001",
        "dns.quad9.net", "dns9.quad9.net", "dns10.quad9.net", "dns11.quad9.net", "9.9.9.9",
        "149.112.112.112", "2620:fe::fe",
        "doh.opendns.com", "doh.familyshield.opendns.com", "208.67.222.222", "208.67.220.220",
        "dns.adguard.com", "dns.adguard-dns.com", "dns-unfiltered.adguard.com", "dns-family.adguard.com",
        "doh.cleanbrowsing.org", "dns.nextdns.io", "doh.mullvad.net", "dns.mullvad.net",
        "doh.dns.sb", "dns.alidns.com", "doh.pub", "dns.pub", "doh.360.cn", "dns.twnic.tw",
        "freedns.controld.com", "dns.controld.com", "doh.libredns.gr", "ordns.he.net",
        "dns.switch.ch", "doh.ffmuc.net", "dns.digitale-gesellschaft.ch", "odvr.nic.cz",
    }
)
DOH_TYPES = ("application/dns-message", "application/dns-json")


def doh_reason(host: str, path: str = "", content_type: str = "", accept: str = "") -> str | None:
    """Why a request is DNS over HTTPS (always blocked), or None.

    At CONNECT only the host is known; a request inside the tunnel is also
    judged by its path and media types, which catches resolvers not listed.
    """
    name = normalize_host(host)
    if name in DOH_HOSTS:
        return f"{name} is a DNS-over-HTTPS resolver"
    route = path.partition("?")[0]
    if route == "/dns-query" or route.startswith("/dns-query/"):
        return "the path /dns-query is DNS over HTTPS"
    media = f"{content_type};{accept}".lower()
    for kind in DOH_TYPES:
        if kind in media:
            return f"the media type {kind} is DNS over HTTPS"
    return None


SECRET_MODES = ("block", "redact")

#: The secret scanner's built-in detectors, by the names its hits carry
#: (``secrets_scan.builtin()``; a unit test keeps the two the same). Listed here,
#: in a module the host imports, so that a profile's ``secret_exempt.detectors``
#: is checked when it is read: the scanner itself needs detect-secrets, which
#: only the sidecar image has.
DETECTORS = (
    "AWS Access Key", "Azure Storage Account access key", "Basic Auth Credentials", "GitHub Token", "GitLab Token",
    "JSON Web Token", "OpenAI Token", "Private Key", "PyPI Token", "SendGrid API Key", "Slack Token",
    "Square OAuth Secret", "Twilio API Key", "Anthropic API Key", "GitHub Fine-Grained Token", "npm Token",
    "Google API Key", "Stripe Access Key",
)


def parse_detector(name: str) -> str:
    """The id of the built-in detector *name* (its name, in any case, or its id); ValueError if there is none."""
    if detector_id(name) in map(detector_id, DETECTORS):
        return detector_id(name)
    raise ValueError(f"{name!r} is not a detector; the detectors are: {', '.join(DETECTORS)}")


def parse_path_prefix(text: str) -> str:
    """A credential route's path prefix as written ("" or "/": every path); ValueError unless it is
    a plain absolute path: no query, no percent escape, no "." or ".." segment."""
    if text and not (_PREFIX.match(text) and not {".", ".."} & set(text.split("/"))):
        raise ValueError(f"must be empty or a path prefix such as /v1/ (letters, digits, - . _ ~, no . or .. "
                         f"segment), not {text!r}")
    return text


def plain_path(path: str) -> bool:
    """Whether *path* (a request's, without its query) means to every server what it says: read
    as servers read paths (percent escapes decoded, once or twice, "\\" as "/", ";params" dropped)
    it holds no "." or ".." segment. Otherwise a server could take ``/v1/../admin`` for ``/admin``."""
    decoded = unquote(unquote(path)).replace("\\", "/")
    return not any(segment.partition(";")[0] in (".", "..") for segment in decoded.split("/"))


@dataclass(frozen=True)
class CredentialRoute:
    """The sidecar injects the credential *name* into requests to *host* on *port* under *path*, in *header*.

    The agent holds *placeholder* at most; the proxy strips whatever the client
    sent and puts the real value in its place.
    """

    host: str
    header: str
    scheme: str  # "" sends the bare value; "Bearer" sends "Bearer VALUE"
    name: str
    placeholder: str
    on_secret: str = ""  # a mode (SECRET_MODES) for requests to host:port; "" leaves it to the policy's on_secret
    port: int = 443
    path: str = ""  # a path prefix (parse_path_prefix); "": every path

    def header_value(self, secret: str) -> str:
        return f"{self.scheme} {secret}" if self.scheme else secret

    def serves(self, port: int, path: str) -> bool:
        """Whether a request to this route's host on *port* for *path* (query and all) gets the credential.

        A prefix matches whole segments (``/v1/`` and ``/v1`` take ``/v1`` and ``/v1/messages``,
        not ``/v1beta``), on the path as sent, which must then also be plain (:func:`plain_path`).
        """
        if port != self.port:
            return False
        prefix, target = self.path.rstrip("/"), path.partition("?")[0]
        return not prefix or (target == prefix or target.startswith(prefix + "/")) and plain_path(target)


_TOP_FIELDS = {"bottle", "allow", "credentials", "secret_patterns", "on_secret", "secret_exempt", "budget", "prices"}
_BUDGET_FIELDS = {"max_tokens", "max_usd", "per"}
_ROUTE_FIELDS = {"host", "port", "path", "header", "scheme", "name", "placeholder", "on_secret"}
_EXEMPT_FIELDS = {"detectors", "values"}
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")  # an HTTP header name or auth scheme
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]*)+\Z")


@dataclass(frozen=True)
class Policy:
    """A bottle's egress policy, read and checked."""

    bottle: str
    rules: tuple[Rule, ...] = ()
    credentials: tuple[CredentialRoute, ...] = ()
    secret_patterns: tuple[re.Pattern[bytes], ...] = ()  # compiled for scanning bytes
    on_secret: tuple[tuple[Rule, str], ...] = ()  # (rule, mode); the last match decides
    exempt_detectors: frozenset[str] = frozenset()  # detector ids (detector_id) not run
    exempt_values: tuple[str, ...] = ()  # what no detector reports, though it looks like a secret
    budget: Budget | None = None  # what the bottle may spend on the Messages API (see metering)
    prices: Budget = Budget()  # no limit, only the prices: what a reply is estimated to cost without a budget

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Policy":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyError(f"cannot read the egress policy {path}: {err}") from None
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as err:  # PolicyError, or JSON that does not parse
            raise PolicyError(f"egress policy {path}: {err}") from None

    @classmethod
    def from_dict(cls, data: object) -> "Policy":
        if not isinstance(data, dict):
            raise PolicyError("must be a JSON object")
        _no_unknown(data, _TOP_FIELDS, "")
        bottle = data.get("bottle")
        if not isinstance(bottle, str) or not bottle:
            raise PolicyError("'bottle' must be the bottle's slug")
        rules = []
        for index, text in enumerate(_list(data, "allow", str)):
            try:
                rules.append(parse_rule(text))
            except RuleError as err:
                raise PolicyError(f"allow[{index}]: {err}") from None
        patterns = []
        for index, pattern in enumerate(_list(data, "secret_patterns", str)):
            try:
                patterns.append(re.compile(pattern.encode()))
            except re.error as err:
                raise PolicyError(f"secret_patterns[{index}]: {pattern!r} is not a regular expression: {err}") from None
        routes = [_route(index, entry) for index, entry in enumerate(_list(data, "credentials", dict))]
        places = [f"{route.host}:{route.port}" for route in routes]
        if len(set(places)) != len(places):
            raise PolicyError(f"credentials: one route per host and port, but {places}")
        modes = [_mode(index, entry) for index, entry in enumerate(_list(data, "on_secret", dict))]
        detectors, values = _exempt(data.get("secret_exempt", {}))
        prices = _prices(data.get("prices", {}))
        return cls(bottle, tuple(rules), tuple(routes), tuple(patterns), tuple(modes), detectors, values,
                   _budget(data.get("budget"), prices), Budget(prices=prices))

    def match(self, host: str, port: int, scheme: str) -> Rule | None:
        """The first rule allowing *host*:*port* over *scheme* ("https" or "http"), or None."""
        return next((rule for rule in self.rules if rule.matches(host, port, scheme)), None)

    def literal_allows(self, address: Address | str, port: int) -> Rule | None:
        """The first rule naming *address* (or a CIDR holding it) on *port*: it overrides
        ``forbidden_address``, which is how an operator lets a bottle reach an internal service."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        return next((rule for rule in self.rules if rule.names_address(address, port)), None)

    def route_at(self, host: str, port: int) -> CredentialRoute | None:
        """The credential route for *host*:*port*, whatever its path prefix says; or None."""
        name = normalize_host(host)
        return next((route for route in self.credentials if (route.host, route.port) == (name, port)), None)

    def credential_headers(self, host: str) -> frozenset[str]:
        """The headers the routes for *host* inject, on any of its ports; empty if it has none."""
        name = normalize_host(host)
        return frozenset(route.header for route in self.credentials if route.host == name)

    def secret_mode(self, host: str, port: int, scheme: str) -> str:
        """What a secret in a request to *host*:*port* over *scheme* does: "block" or "redact".

        The credential route for host:port decides if it says (routes are for
        HTTPS only), then the last ``on_secret`` entry whose rule matches: a
        child profile's entries come after its parents'.
        """
        route = self.route_at(host, port) if scheme == "https" else None
        if route is not None and route.on_secret:
            return route.on_secret
        return next((mode for rule, mode in reversed(self.on_secret) if rule.matches(host, port, scheme)), "block")


def _no_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"{where}unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _list(data: dict, field: str, kind: type, where: str = "") -> list:
    value = data.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        raise PolicyError(f"'{where}{field}' must be a list of {'strings' if kind is str else 'objects'}")
    return value


def _mode(index: int, entry: dict) -> tuple[Rule, str]:
    where = f"on_secret[{index}]: "
    _no_unknown(entry, {"rule", "mode"}, where)
    if entry.get("mode") not in SECRET_MODES:
        raise PolicyError(f"{where}'mode' must be one of {', '.join(SECRET_MODES)}, not {entry.get('mode')!r}")
    try:
        return parse_rule(entry.get("rule")), entry["mode"]
    except RuleError as err:
        raise PolicyError(f"{where}'rule': {err}") from None


def _exempt(exempt: object) -> tuple[frozenset[str], tuple[str, ...]]:
    if not isinstance(exempt, dict):
        raise PolicyError("'secret_exempt' must be an object with 'detectors' and 'values'")
    _no_unknown(exempt, _EXEMPT_FIELDS, "secret_exempt: ")
    detectors = set()
    for index, name in enumerate(_list(exempt, "detectors", str, "secret_exempt.")):
        try:
            detectors.add(parse_detector(name))
        except ValueError as err:
            raise PolicyError(f"secret_exempt.detectors[{index}]: {err}") from None
    values = _list(exempt, "values", str, "secret_exempt.")
    if not all(values):
        raise PolicyError("secret_exempt.values: a value must not be empty")
    return frozenset(detectors), tuple(values)


def _route(index: int, entry: dict) -> CredentialRoute:
    where = f"credentials[{index}]: "
    _no_unknown(entry, _ROUTE_FIELDS, where)
    port = entry.get("port", DEFAULT_PORTS["https"])
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        raise PolicyError(f"{where}'port' must be a port number (1-65535), not {port!r}")
    values = {field: entry.get(field, "") for field in _ROUTE_FIELDS - {"port"}}
    if not all(isinstance(value, str) for value in values.values()):
        raise PolicyError(f"{where}every field but 'port' must be a string")
    try:
        parse_path_prefix(values["path"])
    except ValueError as err:
        raise PolicyError(f"{where}'path' {err}") from None
    host = normalize_host(values["host"])
    try:
        rule = parse_rule(values["host"])
    except RuleError:
        rule = None
    single_address = rule is not None and rule.network is not None and rule.network.num_addresses == 1
    exact_name = rule is not None and rule.network is None and not rule.wildcard and rule.text.lower() == rule.host
    if not (exact_name or (single_address and parse_address(host) is not None)):
        raise PolicyError(f"{where}'host' must be one exact host name or IP address, not {values['host']!r}")
    if not _TOKEN.match(values["header"]):
        raise PolicyError(f"{where}'header' must be a header name, not {values['header']!r}")
    if values["scheme"] and not _TOKEN.match(values["scheme"]):
        raise PolicyError(f"{where}'scheme' must be empty or one word such as Bearer, not {values['scheme']!r}")
    if not values["name"] or not values["placeholder"]:
        raise PolicyError(f"{where}'name' and 'placeholder' must not be empty")
    if values["on_secret"] not in ("", *SECRET_MODES):
        raise PolicyError(f"{where}'on_secret' must be one of {', '.join(SECRET_MODES)}, not {values['on_secret']!r}")
    return CredentialRoute(host, values["header"].lower(), values["scheme"], values["name"], values["placeholder"],
                           values["on_secret"], port, values["path"])


def _prices(data: object) -> dict:
    if not isinstance(data, dict) or not all(isinstance(value, dict) for value in data.values()):
        raise PolicyError("'prices' must map a model prefix to its prices per million tokens")
    return data


def _budget(data: object, prices: dict) -> Budget | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise PolicyError("'budget' must be an object")
    _no_unknown(data, _BUDGET_FIELDS, "budget.")
    max_tokens, max_usd, per = data.get("max_tokens"), data.get("max_usd"), data.get("per", "bottle")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0):
        raise PolicyError("budget.max_tokens must be a whole number of tokens, 0 or more")
    if max_usd is not None and (not isinstance(max_usd, (int, float)) or isinstance(max_usd, bool) or max_usd < 0):
        raise PolicyError("budget.max_usd must be a number of dollars, 0 or more")
    if per not in ("bottle", "run"):
        raise PolicyError(f"budget.per must be 'bottle' or 'run', not {per!r}")
    return Budget(max_tokens, None if max_usd is None else float(max_usd), per, prices)


class PolicyFile:
    """The policy at *path*, reloaded when the file changes.

    ``current()`` costs one stat(2) when nothing changed, so the proxy asks on
    every request and an allowlist change applies to the next one. A file that
    does not load (say, caught half-written) leaves the policy in force as it
    was: a botched update must neither open nor shut the door unannounced.
    ``report(message, failed)`` hears of every reload and every failure.
    """

    def __init__(self, path: str | os.PathLike, report: Callable[[str, bool], None] = lambda message, failed: None):
        self.path = Path(path)
        self.report = report
        self._stamp = _stamp(self.path)
        self._policy = Policy.load(self.path)

    def current(self) -> Policy:
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._policy = Policy.load(self.path)
            except PolicyError as err:
                self.report(f"kept the previous policy: {err}", True)
            else:
                self.report(f"reloaded {self.path}: {len(self._policy.rules)} allow rule(s)", False)
        return self._policy


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    # ctime too: a rewrite within the same second, at the same size, on a
    # recycled inode still moves it.
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
