"""The scanner sees the whole request (issue 10, item 7).

Besides the URL, the header values and the body, a request carries data in
what names it: the host (and so a DNS query, if the sidecar resolved it), the
TLS SNI and ALPN offers, the Host header, the method, the headers' names. A
token may be glued to a letter, or escaped as the request declares (percent
escapes in a URL or a form, ``\\u`` escapes in JSON, gzip). Each is found, a
name is refused before the host is resolved whatever the host's mode, and the
audit log never holds what was found.

The secrets are made here, at random, in the shapes the detectors know.
"""

import asyncio
import gzip
import http.client
import json
import random
import re
import ssl
import string
from urllib.parse import quote

import pytest
from mitmproxy.test import tflow

from bottle_sidecar.audit import AuditLog, read_events
from bottle_egress_sidecar.egress import EgressAddon
from bottle_egress_sidecar.policy import PolicyFile
from bottle_sidecar.secrets_scan import WEAK, Hit, Markers, Scanner
from test_egress_proxy import BODY_LIMIT, SLUG, _audit_bytes, loopback, world  # noqa: F401
from tests.unit.test_secrets_scan import TOKENS

RANDOM = random.Random()
ALNUM = string.ascii_letters + string.digits


def made(prefix: str, length: int, alphabet: str = ALNUM) -> str:
    return prefix + "".join(RANDOM.choices(alphabet, k=length))


GITHUB = made("ghp_", 36)
AWS = made("AKIA", 16, string.ascii_uppercase + string.digits)
GOOGLE = made("AIza", 35)
SECRETS = (GITHUB, AWS, GOOGLE)
JSON_TYPE = [(b"content-type", b"application/json")]


def percent(text: str) -> str:
    """Every character percent-escaped."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def json_escaped(text: str) -> str:
    """Every character as JSON's \\u00XX."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


# -- glued tokens -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(TOKENS) - WEAK))
def test_a_token_with_a_long_fixed_start_is_found_glued_to_letters_on_both_sides(name):
    body = f"x{TOKENS[name]}x".encode()
    assert Scanner().scan(body).detector == name


@pytest.mark.parametrize("name", sorted(WEAK))
def test_a_short_start_glued_to_a_letter_in_front_is_found_in_a_body(name):
    body = f'{{"note": "x{TOKENS[name]}"}}'.encode()
    assert Scanner().scan(body).detector == name


@pytest.mark.parametrize("name", sorted(WEAK))
def test_a_short_start_inside_a_word_is_base64_in_a_body_but_a_token_elsewhere(name):
    # base64 letters on both sides: what a chance match inside a screenshot looks like
    glued = f"iVBORw0KGgo{TOKENS[name]}AAAA".encode()
    scanner = Scanner()

    assert scanner.scan(glued) is None
    assert scanner.scan(glued, "url", body=False).detector == name
    assert scanner.scan_request(b"https://h.example/?q=" + glued, [], b"").location == "url"
    assert scanner.scan_request(b"https://h.example/", [(b"cookie", glued)], b"").location == "header cookie"
    assert scanner.scan_names([("host", glued + b".example")]).location == "host"


def test_the_weak_detectors_are_the_scanners_own():
    assert WEAK <= set(TOKENS)


# -- names ------------------------------------------------------------------------------------------------------


def test_names_are_scanned_as_one_text_and_a_hit_says_which_name_without_repeating_it():
    scanner = Scanner()
    names = [("host", b"api.example.com"), ("method", b"POST"), ("header name", b"accept"),
             ("header name", b"x-" + GITHUB.encode()), ("TLS ALPN offer", b"h2")]

    hit = scanner.scan_names(names)

    assert hit == Hit("GitHub Token", "header name", 2)
    assert GITHUB not in str(hit)
    assert scanner.scan_names(names[:3] + names[4:]) is None


def test_the_profiles_own_patterns_are_run_on_names_too():
    scanner = Scanner([("secret_patterns[0]", re.compile(rb"corp-[0-9]{6}"))])
    assert scanner.scan_names([("header name", b"x-corp-123456")]).detector == "secret_patterns[0]"


def test_a_name_is_redacted_with_the_markers_bodies_get():
    markers = Markers()
    scanner = Scanner()
    body, _ = scanner.redact(f"t={GITHUB}".encode(), "body", markers)

    assert scanner.redact_name(f"x{AWS}.{GITHUB}.example", markers) == (
        "x[bottle:redacted:aws-access-key:1].[bottle:redacted:github-token:1].example")
    assert body == b"t=[bottle:redacted:github-token:1]"
    assert scanner.redact_name("api.example.com", markers) == "api.example.com"


# -- what a request declares ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [f"k={percent(GITHUB)}", f"k={GITHUB[:3]}%{ord(GITHUB[3]):02x}{GITHUB[4:]}",
                                   f"k={quote(GOOGLE, safe='')}"], ids=["every-byte", "one-byte", "quote"])
def test_a_percent_escaped_token_in_the_url_is_found_where_the_url_has_it(query):
    url = f"https://h.example/search?{query}".encode()
    hit = Scanner().scan_request(url, [], b"")
    assert (hit.location, hit.offset) == ("url", url.index(b"k=") + 2)


@pytest.mark.parametrize("media, found", [
    ("application/json", True), ("application/json; charset=utf-8", True), ("application/vnd.api+json", True),
    ("text/plain", False),  # undeclared: the \u escapes are text, as the server reads them
])
def test_json_escapes_are_decoded_in_a_body_that_declares_json(media, found):
    body = ('{"note": "a ' + json_escaped(GITHUB) + '"}').encode()
    hit = Scanner().scan_request(b"https://h.example/", [(b"Content-Type", media.encode())], body)
    assert (hit is not None) is found
    if found:
        assert (hit.location, hit.offset) == ("body", body.index(b"\\u0067"))


def test_an_escaped_slash_in_json_does_not_split_a_url_token():
    webhook = "https://hooks.slack.com/services/T" + made("", 8) + "/B" + made("", 8) + "/" + made("", 24)
    body = json.dumps({"url": webhook}).replace("/", "\\/").encode()
    assert Scanner().scan_request(b"https://h.example/", JSON_TYPE, body).detector == "Slack Token"


def test_a_form_body_is_percent_decoded():
    body = f"user=me&token={percent(AWS)}".encode()
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    assert Scanner().scan_request(b"https://h.example/", form, body).offset == body.index(b"%")
    assert Scanner().scan_request(b"https://h.example/", [], body) is None  # not declared a form


def test_a_hit_after_escapes_is_told_at_its_offset_in_the_raw_body():
    body = ('{"a": "' + json_escaped("AB CD") + '", "t": "' + GITHUB + '"}').encode()
    assert Scanner().scan_request(b"https://h.example/", JSON_TYPE, body).offset == body.index(GITHUB.encode())


def test_escaped_secrets_are_redacted_escapes_and_all_and_json_stays_json():
    markers = Markers()
    body = ('{"t": "key ' + json_escaped(GITHUB) + '!"}').encode()
    url = f"https://h.example/v1?k={percent(AWS)}&n=1".encode()

    redacted = Scanner().redact_request(url, JSON_TYPE, body, markers)

    assert json.loads(redacted.body) == {"t": "key [bottle:redacted:github-token:1]!"}
    assert redacted.url == b"https://h.example/v1?k=[bottle:redacted:aws-access-key:1]&n=1"
    assert [(hit.detector, hit.location) for hit in redacted.hits] == [("AWS Access Key", "url"),
                                                                       ("GitHub Token", "body")]


def test_an_escaped_backslash_before_an_escape_leaves_the_redacted_json_valid():
    # In JSON "\\\\u0067hp_..." is a backslash and the text u0067hp_...: decoded anyway (a secret one
    # step away), and replaced with the backslash that escapes it, so that the string still parses.
    body = ('{"t": "\\\\u0067' + GITHUB[1:] + '"}').encode()
    redacted = Scanner().redact_request(b"https://h.example/", JSON_TYPE, body, Markers())
    assert json.loads(redacted.body) == {"t": "[bottle:redacted:github-token:1]"}


# -- the addon: names refused before the host is resolved -------------------------------------------------------


class Resolver:
    """Remembers every lookup; answers none."""

    def __init__(self):
        self.asked: list[str] = []

    async def resolve(self, host, port):
        self.asked.append(host)
        return []


def addon_for(tmp_path, allow, **document) -> tuple[EgressAddon, Resolver]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"bottle": SLUG, "allow": allow, **document}))
    resolver = Resolver()
    addon = EgressAddon(PolicyFile(path), {}, AuditLog(tmp_path / "audit.sqlite", SLUG), resolver=resolver,
                        body_limit=BODY_LIMIT)
    return addon, resolver


def connect_flow(host: str):
    flow = tflow.tflow()
    flow.request.method, flow.request.host, flow.request.port = "CONNECT", host, 443
    flow.request.authority = f"{host}:443"
    return flow


@pytest.mark.parametrize("secret, marker", [(AWS, "aws-access-key"), (GITHUB.lower(), "github-token"),
                                            ("x" + AWS, "aws-access-key")], ids=["as-is", "lower-case", "glued"])
def test_a_secret_sub_domain_under_an_allowed_wildcard_is_refused_at_connect_before_any_lookup(tmp_path, secret,
                                                                                                marker):
    addon, resolver = addon_for(tmp_path, ["*.wild.example"])
    flow = connect_flow(f"{secret}.wild.example")

    asyncio.run(addon.http_connect(flow))

    assert flow.response.status_code == 403
    assert "in host at offset" in flow.response.text
    assert resolver.asked == []
    [row] = read_events(tmp_path / "audit.sqlite")
    assert (row["decision"], row["method"], row["detail"]["check"]) == ("blocked", "CONNECT", "secret")
    assert row["host"] == f"{'x' if secret.startswith('x') else ''}[bottle:redacted:{marker}:1].wild.example"
    assert "addresses" not in row["detail"]
    assert secret.encode() not in b"".join(path.read_bytes() for path in tmp_path.glob("audit.sqlite*"))


def _in_method(flow, secret):
    flow.request.method = secret


def _in_header_name(flow, secret):
    flow.request.headers[f"x-{secret}"] = "1"


def _in_alpn(flow, secret):
    flow.client_conn.alpn_offers = [b"h2", secret.encode()]


def _in_sni(flow, secret):
    flow.client_conn.sni = f"{secret}.example"  # it names another host too: the secret must not reach that row


def _in_host(flow, secret):
    flow.request.host = f"{secret.lower()}.example"


CHANNELS = {"method": _in_method, "header name": _in_header_name, "TLS ALPN offer": _in_alpn,
            "TLS SNI": _in_sni, "host": _in_host}


@pytest.mark.parametrize("mode", ["block", "redact"])
@pytest.mark.parametrize("where", list(CHANNELS))
def test_a_secret_in_a_name_is_refused_whatever_the_mode_and_audited_without_it(tmp_path, where, mode):
    rules = ["http://*.example:22", "http://address:22"]
    addon, resolver = addon_for(tmp_path, rules, on_secret=[{"rule": rule, "mode": mode} for rule in rules])
    flow = tflow.tflow()  # plain HTTP to address:22
    flow.client_conn.sni = None
    CHANNELS[where](flow, GITHUB)

    asyncio.run(addon.request(flow))

    assert flow.response.status_code == 403
    assert f"GitHub Token in {where} at offset" in flow.response.text
    assert "never replaced by a marker" in flow.response.text
    assert resolver.asked == []
    [row] = read_events(tmp_path / "audit.sqlite")
    assert (row["decision"], row["detail"]["check"], row["detail"]["location"]) == ("blocked", "secret", where)
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("audit.sqlite*"))
    assert GITHUB.encode() not in stored and GITHUB.lower().encode() not in stored


def test_a_clean_request_still_passes_the_names(tmp_path):
    addon, resolver = addon_for(tmp_path, ["http://address:22"])
    flow = tflow.tflow()
    flow.client_conn.sni = None

    asyncio.run(addon.request(flow))

    assert flow.response is None and resolver.asked == ["address"]


# -- the real proxy ---------------------------------------------------------------------------------------------


def blocked_row(world, where: str) -> dict:
    [row] = [e for e in world.events() if e["decision"] == "blocked"]
    assert (row["detail"]["check"], row["detail"]["location"]) == ("secret", where)
    return row


def assert_no_secret_stored(world, *forms: str) -> None:
    stored = _audit_bytes(world)
    for secret in SECRETS + forms:
        assert secret.encode() not in stored


@pytest.mark.parametrize("request_args, where", [
    ({"headers": {f"x-{GITHUB}": "1"}}, "header name"),
    ({"method": GITHUB}, "method"),
    ({"path": f"/search?q={percent(GITHUB)}"}, "url"),
    ({"path": f"/search?q=x{AWS}x"}, "url"),
    ({"method": "POST", "body": ('{"t": "' + json_escaped(GOOGLE) + '"}').encode(),
      "headers": {"content-type": "application/json"}}, "body"),
    ({"method": "POST", "body": gzip.compress(f"t={AWS}".encode()), "headers": {"content-encoding": "gzip"}}, "body"),
    ({"method": "POST", "body": f"t={percent(AWS)}".encode(),
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, "body"),
], ids=["header-name", "method", "percent-query", "glued-query", "json-escapes", "gzip-body", "form-body"])
def test_the_proxy_blocks_each_channel_and_audits_no_secret(world, request_args, where):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()

    status, body = world.https_request(**request_args)

    assert status == 403, body
    assert f"in {where} at offset" in body
    assert len(world.https.seen) == seen
    assert blocked_row(world, where)["path"] is None
    assert_no_secret_stored(world, percent(GITHUB), json_escaped(GOOGLE))


@pytest.mark.parametrize("secret", [AWS, GITHUB.lower()], ids=["aws", "github-lower-case"])
def test_a_secret_sub_domain_is_refused_at_connect_and_never_resolved(world, secret):
    # Refused before the lookup the allowlist's check makes (".invalid" names none, RFC 6761, so a
    # resolver answers it itself): the row is the CONNECT's, blocked, and has no addresses.
    world.policy(["*.wild.invalid"])
    world.events()

    answer = world.connect(f"{secret}.wild.invalid:443").decode()

    assert answer.startswith("HTTP/1.1 403") and "in host at offset 0" in answer
    [row] = [e for e in world.events() if e["decision"] != "policy-reloaded"]
    assert (row["decision"], row["method"], row["detail"]["check"]) == ("blocked", "CONNECT", "secret")
    assert row["host"].startswith("[bottle:redacted:") and row["host"].endswith("].wild.invalid")
    assert "addresses" not in row["detail"]
    assert_no_secret_stored(world)


def _tls_request(world, *, sni: str, alpn: list[str]) -> tuple[int, str]:
    status, _, sock = world.open_tunnel(f"localhost:{world.https_port}")
    assert status == 200
    context = ssl.create_default_context(cafile=str(world.bottle_ca))
    context.check_hostname = False
    context.set_alpn_protocols(alpn)
    with context.wrap_socket(sock, server_hostname=sni) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: localhost:{world.https_port}\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response.read().decode()


@pytest.mark.parametrize("sni, alpn, where", [
    (f"{AWS}.localhost", ["http/1.1"], "TLS SNI"),
    ("localhost", ["http/1.1", AWS], "TLS ALPN offer"),
], ids=["sni", "alpn"])
def test_a_secret_in_the_tls_handshake_is_blocked_before_it_goes_upstream(world, sni, alpn, where):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()

    status, body = _tls_request(world, sni=sni, alpn=alpn)

    assert status == 403 and f"AWS Access Key in {where}" in body
    assert len(world.https.seen) == seen
    blocked_row(world, where)
    assert_no_secret_stored(world)
