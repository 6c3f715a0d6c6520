"""The egress policy: rule syntax, matching, address classes, DoH, the policy file and its reloads."""

import ipaddress
import json
import os

import pytest

from bottle_egress_sidecar.policy import (
    EXPECTED,
    CredentialRoute,
    Policy,
    PolicyError,
    PolicyFile,
    RuleError,
    doh_reason,
    forbidden_address,
    parse_rule,
    rule_for,
)


@pytest.mark.parametrize(
    "text, scheme, port, host, wildcard, network",
    [
        ("api.anthropic.com", "https", 443, "api.anthropic.com", False, None),
        ("  API.Anthropic.com ", "https", 443, "api.anthropic.com", False, None),
        ("https://api.example.com", "https", 443, "api.example.com", False, None),
        ("*.github.com", "https", 443, ".github.com", True, None),
        ("docs.example.org:8443", "https", 8443, "docs.example.org", False, None),
        ("localhost", "https", 443, "localhost", False, None),
        ("http://mirror.local", "http", 80, "mirror.local", False, None),
        ("http://mirror.local:8080", "http", 8080, "mirror.local", False, None),
        ("http://*.svc.local", "http", 80, ".svc.local", True, None),
        ("10.0.0.5", "https", 443, "", False, "10.0.0.5/32"),
        ("10.0.0.0/8:5432", "https", 5432, "", False, "10.0.0.0/8"),
        ("http://192.168.1.10:8080", "http", 8080, "", False, "192.168.1.10/32"),
        ("::1", "https", 443, "", False, "::1/128"),
        ("fd00::/8", "https", 443, "", False, "fd00::/8"),
        ("[::1]:8443", "https", 8443, "", False, "::1/128"),
        ("[fd00::/8]:443", "https", 443, "", False, "fd00::/8"),
    ],
)
def test_rules_parse(text, scheme, port, host, wildcard, network):
    rule = parse_rule(text)
    assert (rule.scheme, rule.port, rule.host, rule.wildcard) == (scheme, port, host, wildcard)
    assert rule.network == (network and ipaddress.ip_network(network))
    assert rule.text == text.strip()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no host"),
        ("ftp://example.com", "unknown scheme 'ftp://'"),
        ("example.com/path", "is not a CIDR"),
        ("example.com:0", "'0' is not a port"),
        ("example.com:https", "'https' is not a port"),
        ("example.com:70000", "'70000' is not a port"),
        ("example.com:", "'' is not a port"),
        ("*", "a wildcard must be the whole first label"),
        ("a.*.example.com", "a wildcard must be the whole first label"),
        ("*example.com", "a wildcard must be the whole first label"),
        ("*.", "'' is not a host name"),
        ("exa mple.com", "'exa mple.com' is not a host name"),
        ("-bad.example.com", "is not a host name"),
        ("1.2.3", "'1.2.3' is not a host name or an IP address"),
        ("10.0.0.1/8", "is not a CIDR (10.0.0.1/8 has host bits set)"),
        ("[example.com]:443", "in brackets is not an IPv6 address"),
        ("[::1", "'[' without ']'"),
        ("[::1]443", "after ']'"),
    ],
)
def test_bad_rules_say_which_and_what_is_expected(text, fragment):
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    message = str(info.value)
    assert f"egress rule {text!r}" in message
    assert fragment in message
    assert message.endswith(EXPECTED)


def policy(*allow, **fields) -> Policy:
    return Policy.from_dict({"bottle": "slug", "allow": list(allow), **fields})


@pytest.mark.parametrize(
    "rules, host, port, scheme, allowed",
    [
        (["api.example.com"], "api.example.com", 443, "https", True),
        (["api.example.com"], "API.Example.COM.", 443, "https", True),
        (["api.example.com"], "api.example.com", 8443, "https", False),
        (["api.example.com"], "api.example.com", 443, "http", False),
        (["api.example.com"], "example.com", 443, "https", False),
        (["*.github.com"], "api.github.com", 443, "https", True),
        (["*.github.com"], "a.b.github.com", 443, "https", True),
        (["*.github.com"], "github.com", 443, "https", False),
        (["*.github.com"], "evilgithub.com", 443, "https", False),
        (["http://mirror.local"], "mirror.local", 80, "http", True),
        (["http://mirror.local"], "mirror.local", 443, "https", False),
        (["10.0.0.0/8:5432"], "10.1.2.3", 5432, "https", True),
        (["10.0.0.0/8:5432"], "10.1.2.3", 443, "https", False),
        (["10.0.0.0/8"], "internal.example", 443, "https", False),
        (["[::1]:8443"], "[::1]", 8443, "https", True),
        (["::1"], "::ffff:127.0.0.1", 443, "https", False),
        (["a.example", "b.example:8443"], "b.example", 8443, "https", True),
    ],
)
def test_match(rules, host, port, scheme, allowed):
    rule = policy(*rules).match(host, port, scheme)
    assert (rule is not None) == allowed


def test_match_returns_the_first_rule_that_allows():
    assert policy("a.example", "*.example").match("a.example", 443, "https").text == "a.example"


def test_only_a_rule_naming_an_address_overrides_its_class():
    rules = policy("internal.example", "10.0.0.0/24", "127.0.0.1:8080", "http://192.168.0.1:8000")
    assert rules.literal_allows("10.0.0.7", 443).text == "10.0.0.0/24"
    assert rules.literal_allows(ipaddress.ip_address("127.0.0.1"), 8080).text == "127.0.0.1:8080"
    assert rules.literal_allows("192.168.0.1", 8000) is not None  # whatever the scheme
    assert rules.literal_allows("127.0.0.1", 443) is None  # another port
    assert rules.literal_allows("10.0.1.1", 443) is None


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"),
        ("240.0.0.1", "a private address"),  # reserved, and the stdlib files it under private too
        ("192.0.2.1", "a private address"),  # documentation
        ("2001:db8::1", "a private address"),  # documentation
        ("::7f00:1", "a reserved address"),  # IPv4-compatible: deprecated, not routed
        # Python 3.13 writes an IPv4-mapped address with its IPv4 part dotted (::ffff:127.0.0.1), 3.11 in hex.
        ("::ffff:127.0.0.1", f"a loopback address (127.0.0.1 inside {ipaddress.ip_address('::ffff:127.0.0.1')})"),
        ("::ffff:169.254.169.254",
         f"a cloud metadata address (169.254.169.254 inside {ipaddress.ip_address('::ffff:169.254.169.254')})"),
        ("64:ff9b::a00:1", "a private address (10.0.0.1 inside 64:ff9b::a00:1)"),
        ("2002:a00:1::", "a private address (10.0.0.1 inside 2002:a00:1::)"),
    ],
)
def test_forbidden_addresses_say_why(address, reason):
    assert forbidden_address(address) == reason
    assert forbidden_address(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]
)
def test_public_addresses_are_not_forbidden(address):
    assert forbidden_address(address) is None


@pytest.mark.parametrize(
    "request_parts, reason",
    [
        (("dns.google",), "dns.google is a DNS-over-HTTPS resolver"),
        (("Cloudflare-DNS.com.",), "cloudflare-dns.com is a DNS-over-HTTPS resolver"),
        (("1.1.1.1",), "1.1.1.1 is a DNS-over-HTTPS resolver"),
        (("[2606:4700:4700::1111]",), "2606:4700:4700::1111 is a DNS-over-HTTPS resolver"),
        (("api.example.com", "/dns-query?dns=AAAB"), "the path /dns-query is DNS over HTTPS"),
        (("api.example.com", "/dns-query/abc123"), "the path /dns-query is DNS over HTTPS"),
        (("api.example.com", "/q", "application/dns-message"), "the media type application/dns-message"),
        (("api.example.com", "/q", "", "application/dns-json"), "the media type application/dns-json"),
        (("api.example.com", "/q", "", "text/html, Application/DNS-Message;q=0.9"), "application/dns-message"),
    ],
)
def test_dns_over_https_is_recognised(request_parts, reason):
    assert reason in doh_reason(*request_parts)


@pytest.mark.parametrize(
    "request_parts",
    [("api.example.com",), ("api.example.com", "/dns-query-docs"), ("google.com", "/", "application/json", "*/*")],
)
def test_ordinary_requests_are_not_dns_over_https(request_parts):
    assert doh_reason(*request_parts) is None


@pytest.mark.parametrize(
    "host, port, scheme, rule",
    [
        ("Api.Example.com", 443, "https", "api.example.com"),
        ("api.example.com", 8443, "https", "api.example.com:8443"),
        ("mirror.local", 80, "http", "http://mirror.local"),
        ("mirror.local", 8080, "http", "http://mirror.local:8080"),
        ("10.0.0.5", 5432, "https", "10.0.0.5:5432"),
        ("::1", 443, "https", "[::1]"),
        ("[::1]", 8080, "http", "http://[::1]:8080"),
    ],
)
def test_rule_for_suggests_a_rule_that_allows_exactly_that(host, port, scheme, rule):
    assert rule_for(host, port, scheme) == rule
    assert parse_rule(rule).matches(host, port, scheme)


ROUTE = {"host": "api.anthropic.com", "header": "X-Api-Key", "scheme": "", "name": "ANTHROPIC_API_KEY",
         "placeholder": "sk-ant-placeholder"}


def test_a_whole_policy_loads(tmp_path):
    path = tmp_path / "policy.json"
    bearer = {**ROUTE, "host": "api.github.com", "header": "authorization", "scheme": "Bearer", "name": "GH"}
    path.write_text(json.dumps({"bottle": "slug", "allow": ["api.anthropic.com"], "credentials": [ROUTE, bearer],
                                "secret_patterns": ["corp-[0-9]{6}"]}))

    loaded = Policy.load(path)

    assert loaded.bottle == "slug"
    assert [rule.text for rule in loaded.rules] == ["api.anthropic.com"]
    assert loaded.secret_patterns[0].search(b"x corp-123456 y")
    route = loaded.route_at("API.anthropic.com", 443)
    assert (route.header, route.name, route.header_value("v")) == ("x-api-key", "ANTHROPIC_API_KEY", "v")
    assert (route.port, route.path) == (443, "")  # by default: port 443, every path
    assert loaded.route_at("api.github.com", 443).header_value("v") == "Bearer v"
    assert loaded.route_at("anthropic.com", 443) is None
    assert loaded.route_at("api.anthropic.com", 8443) is None  # another port: another server, maybe


def test_a_route_names_a_port_and_a_path_prefix():
    policy = Policy.from_dict({"bottle": "s", "credentials": [
        {**ROUTE, "port": 8443, "path": "/v1/"}, {**ROUTE, "header": "authorization", "name": "OTHER"}]})

    route = policy.route_at("api.anthropic.com", 8443)
    assert (route.name, route.port, route.path) == ("ANTHROPIC_API_KEY", 8443, "/v1/")
    assert policy.route_at("api.anthropic.com", 443).name == "OTHER"
    assert policy.credential_headers("API.anthropic.com") == {"x-api-key", "authorization"}
    assert policy.credential_headers("api.github.com") == set()


@pytest.mark.parametrize("path, served", [
    ("/v1", True), ("/v1/", True), ("/v1/messages?beta=true", True), ("/v1/a/b", True),
    ("/", False), ("/v2/messages", False), ("/v1beta/x", False), ("/x/v1/", False), ("*", False),
    ("/v1/../admin", False), ("/v1/./x", False), ("/v1/..", False), ("/v1/%2e%2e/admin", False),
    ("/v1/%2E%2e/admin", False), ("/v1/%252e%252e/admin", False), ("/v1/..;/admin", False),
    ("/v1/..\\admin", False), ("/v1/x/..%2fadmin", False),
])
def test_a_path_prefix_serves_the_paths_under_it_as_servers_read_them(path, served):
    route = CredentialRoute("h.example", "x-api-key", "", "K", "p", port=443, path="/v1/")
    assert route.serves(443, path) is served
    assert route.serves(8443, "/v1/messages") is False


def test_a_route_without_a_prefix_serves_every_path_of_its_port():
    route = CredentialRoute("h.example", "x-api-key", "", "K", "p", port=8443)
    assert route.serves(8443, "/anything/../at/all?q") and not route.serves(443, "/")


@pytest.mark.parametrize(
    "document, fragment",
    [
        ([], "must be a JSON object"),
        ({"allow": []}, "'bottle' must be the bottle's slug"),
        ({"bottle": "s", "allowed": []}, "unknown field(s) allowed"),
        ({"bottle": "s", "allow": "a.example"}, "'allow' must be a list of strings"),
        ({"bottle": "s", "allow": ["a.example", "b.example/x"]}, "allow[1]: egress rule 'b.example/x'"),
        ({"bottle": "s", "secret_patterns": ["("]}, "secret_patterns[0]: '(' is not a regular expression"),
        ({"bottle": "s", "credentials": [{**ROUTE, "host": "*.anthropic.com"}]}, "credentials[0]: 'host' must be one"),
        ({"bottle": "s", "credentials": [{**ROUTE, "host": "api.anthropic.com:8443"}]}, "'host' must be one exact"),
        ({"bottle": "s", "credentials": [{**ROUTE, "host": "not a host"}]}, "credentials[0]: 'host' must be one"),
        ({"bottle": "s", "credentials": [{**ROUTE, "host": ""}]}, "credentials[0]: 'host' must be one"),
        ({"bottle": "s", "credentials": [{**ROUTE, "header": "x api key"}]}, "'header' must be a header name"),
        ({"bottle": "s", "credentials": [{**ROUTE, "scheme": "Bearer x"}]}, "'scheme' must be empty or one word"),
        ({"bottle": "s", "credentials": [{**ROUTE, "placeholder": ""}]}, "'name' and 'placeholder' must not be"),
        ({"bottle": "s", "credentials": [{**ROUTE, "value": "x"}]}, "credentials[0]: unknown field(s) value"),
        ({"bottle": "s", "credentials": [ROUTE, ROUTE]}, "one route per host and port"),
        ({"bottle": "s", "credentials": [{**ROUTE, "port": "443"}]}, "credentials[0]: 'port' must be a port number"),
        ({"bottle": "s", "credentials": [{**ROUTE, "port": 0}]}, "credentials[0]: 'port' must be a port number"),
        ({"bottle": "s", "credentials": [{**ROUTE, "port": True}]}, "credentials[0]: 'port' must be a port number"),
        ({"bottle": "s", "credentials": [{**ROUTE, "path": "v1/"}]}, "credentials[0]: 'path' must be empty or a path"),
        ({"bottle": "s", "credentials": [{**ROUTE, "path": "/v1/../x"}]}, "'path' must be empty or a path prefix"),
        ({"bottle": "s", "credentials": [{**ROUTE, "path": "/v1?x=1"}]}, "'path' must be empty or a path prefix"),
        ({"bottle": "s", "credentials": [{**ROUTE, "path": "/v%31"}]}, "'path' must be empty or a path prefix"),
        ({"bottle": "s", "credentials": [{**ROUTE, "path": 1}]}, "every field but 'port' must be a string"),
    ],
)
def test_a_bad_policy_names_the_file_and_the_field(tmp_path, document, fragment):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    assert str(info.value).startswith(f"egress policy {path}: ")
    assert fragment in str(info.value)


def test_an_unreadable_policy_says_so(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the egress policy .*missing.json"):
        Policy.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PolicyError, match="broken.json: Expecting property name"):
        Policy.load(tmp_path / "broken.json")


def write_policy(path, allow):
    """Replace the policy as the host does: a new file renamed over the old one."""
    staging = path.with_suffix(".new")
    staging.write_text(json.dumps({"bottle": "slug", "allow": allow}))
    os.replace(staging, path)


def test_the_policy_file_reloads_when_it_changes(tmp_path):
    path = tmp_path / "policy.json"
    write_policy(path, ["a.example"])
    reports = []
    policies = PolicyFile(path, lambda message, failed: reports.append((message, failed)))
    first = policies.current()

    assert policies.current() is first  # unchanged: no reload
    write_policy(path, ["b.example"])  # same size as before

    assert [rule.text for rule in policies.current().rules] == ["b.example"]
    assert reports == [(f"reloaded {path}: 1 allow rule(s)", False)]


def test_a_policy_that_does_not_load_leaves_the_previous_one_in_force(tmp_path):
    path = tmp_path / "policy.json"
    write_policy(path, ["a.example"])
    reports = []
    policies = PolicyFile(path, lambda message, failed: reports.append((message, failed)))

    path.write_text('{"bottle": "slug", "allow": ["a.exa')  # caught half-written

    assert [rule.text for rule in policies.current().rules] == ["a.example"]
    assert reports[-1][1] is True and "kept the previous policy" in reports[-1][0]
    assert policies.current().rules[0].text == "a.example" and len(reports) == 1  # reported once

    write_policy(path, ["c.example"])
    assert [rule.text for rule in policies.current().rules] == ["c.example"]


def test_a_policy_file_must_load_at_start(tmp_path):
    with pytest.raises(PolicyError):
        PolicyFile(tmp_path / "missing.json")
