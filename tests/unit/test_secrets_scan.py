"""The request scanner: what it finds, where it says it found it, and what it leaves alone.

Token-shaped test values are built from pieces, so that this file itself holds
nothing a secret scanner would flag.
"""

import base64
import json
import re
import time
from pathlib import Path

import pytest

from bottle.sidecar import secrets_scan
from bottle.sidecar.secrets_scan import Hit, Scanner


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


TOKENS = {
    "AWS Access Key": "AKIA" + "Z" * 16,
    "Azure Storage Account access key": "AccountKey=" + "a" * 86 + "==",
    "Basic Auth Credentials": "https://deploy:" + "hunter2" + "@git.example.com/repo",
    "GitHub Token": "ghp_" + "A1b2" * 9,
    "GitLab Token": "glpat-" + "x1Y2z3" * 4,
    "JSON Web Token": f"eyJ{b64url({'alg': 'HS256'})[3:]}.{b64url({'sub': '1'})}.c2lnbmF0dXJl",
    "OpenAI Token": "sk-" + "a1" * 10 + "T3Blbk" + "FJ" + "b2" * 10,
    "Private Key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE",
    "PyPI Token": "pypi-" + "AgEIcHlwaS5vcmc" + "k" * 70,
    "SendGrid API Key": "SG." + "a" * 22 + "." + "b" * 43,
    "Slack Token": "xox" + "b-1234567890-" + "abcdef123456",
    "Square OAuth Secret": "sq0" + "csp-" + "c" * 43,
    "Twilio API Key": "AC" + "0123456789abcdef" * 2,
    "Anthropic API Key": "sk-" + "ant-api03-" + "Zx9" * 30,
    "GitHub Fine-Grained Token": "github" + "_pat_" + "11AB" * 20,
    "npm Token": "npm" + "_" + "N0p" * 12,
    "Google API Key": "AI" + "za" + "G" * 35,
    "Stripe Access Key": "sk" + "_live_" + "S7r1" * 25,
}


def test_every_token_format_has_a_case():
    names = {detector.name for detector in secrets_scan.BUILTIN}
    assert names == set(TOKENS)


@pytest.mark.parametrize("name, token", TOKENS.items(), ids=list(TOKENS))
def test_each_token_format_is_found(name, token):
    body = f'{{"content": "look: {token} <- there"}}'.encode()
    hit = Scanner().scan(body)
    start = body.index(token.encode())
    assert (hit.detector, hit.location) == (name, "body")
    assert start <= hit.offset < start + len(token)


def test_a_hit_says_where_but_never_what():
    token = TOKENS["GitHub Token"]
    hit = Scanner().scan(f"x={token}".encode())
    assert token not in repr(hit) and token not in str(hit)
    assert str(hit) == "GitHub Token in body at offset 2"


def test_url_headers_and_body_are_told_apart():
    token = TOKENS["AWS Access Key"].encode()
    scanner = Scanner()
    clean = [(b"Host", b"api.example.com"), (b"Accept", b"*/*")]

    assert scanner.scan_request(b"https://api.example.com/?k=" + token, clean, b"") == Hit(
        "AWS Access Key", "url", len(b"https://api.example.com/?k=")
    )
    assert scanner.scan_request(b"https://api.example.com/", [*clean, (b"X-Token", b"v=" + token)], b"") == Hit(
        "AWS Access Key", "header x-token", 2
    )
    assert scanner.scan_request(b"https://api.example.com/", clean, b"..." + token) == Hit("AWS Access Key", "body", 3)
    assert scanner.scan_request(b"https://api.example.com/", clean, b"{}") is None


def test_the_credential_placeholders_are_not_secrets():
    placeholder = "sk-ant-api03-" + "bottle-placeholder-" * 3
    body = f'{{"env": "ANTHROPIC_API_KEY={placeholder}"}}'.encode()

    assert Scanner().scan(body).detector == "Anthropic API Key"
    assert Scanner(placeholders=[placeholder]).scan(body) is None
    # the placeholder does not hide a real key next to it
    real = TOKENS["Anthropic API Key"]
    assert Scanner(placeholders=[placeholder]).scan(body + real.encode()).detector == "Anthropic API Key"


def test_the_profiles_own_patterns_are_named_by_their_index():
    scanner = Scanner([("secret_patterns[0]", re.compile(rb"corp-[0-9]{6}"))])
    assert scanner.scan(b"ticket corp-123456") == Hit("secret_patterns[0]", "body", 7)


def test_a_token_shape_inside_a_longer_word_is_not_a_token():
    key = TOKENS["Google API Key"].encode()
    assert Scanner().scan(b"iVBORw0KGgo" + key + b"AAAA") is None  # a chance match inside base64
    assert Scanner().scan(b"key " + key) is not None
    assert Scanner().scan(b'"line one\\n' + key + b'"') is not None  # after a JSON escape


def test_a_detector_vets_its_own_matches():
    not_a_jwt = b"eyJub3QganNvbg.eyJhbHNvIG5vdA.sig"  # base64, but not JSON inside
    assert Scanner().scan(not_a_jwt) is None


def test_code_is_not_a_secret():
    sources = Path(secrets_scan.__file__).parent.glob("*.py")
    body = json.dumps({"messages": [{"content": path.read_text()} for path in sources]}).encode()
    assert Scanner().scan(body) is None


def test_a_long_one_line_body_is_scanned_in_linear_time():
    # detect-secrets' patterns were written for lines of code; a JSON body is
    # one line of megabytes, full of the starts of patterns.
    body = b'{"x": "//registry.example/:_ https://a:b eyJhbGci. sk-abc AKIA glpat- xoxb-1-"}' * 50_000
    started = time.perf_counter()
    assert Scanner().scan(body) is None
    assert time.perf_counter() - started < 5  # linear: well under a second; quadratic: hours
