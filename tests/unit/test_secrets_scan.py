"""The request scanner: what it finds, where it says it found it, and what it leaves alone.

Token-shaped test values are built from pieces, so that this file itself holds
nothing a secret scanner would flag.
"""

import base64
import json
import random
import re
import time
from pathlib import Path

import pytest

from bottle_sidecar import secrets_scan
from bottle_egress_sidecar.policy import DETECTORS
from bottle_sidecar.secrets_scan import Hit, Markers, Scanner


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
    names = {detector.name for detector in secrets_scan.builtin()}
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
    assert Scanner(exempt_values=[placeholder]).scan(body) is None
    # the placeholder does not hide a real key next to it
    real = TOKENS["Anthropic API Key"]
    assert Scanner(exempt_values=[placeholder]).scan(body + real.encode()).detector == "Anthropic API Key"


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


def test_the_policy_lists_the_detectors_the_scanner_has():
    # the host checks a profile's secret_exempt.detectors against policy.DETECTORS
    assert set(DETECTORS) == {detector.name for detector in secrets_scan.builtin()}


def test_markers_are_numbered_per_detector_and_stable_per_secret():
    markers = Markers()

    assert markers("GitHub Token", b"first") == b"[bottle:redacted:github-token:1]"
    assert markers("GitHub Token", b"second") == b"[bottle:redacted:github-token:2]"
    assert markers("AWS Access Key", b"third") == b"[bottle:redacted:aws-access-key:1]"
    assert markers("GitHub Token", b"first") == b"[bottle:redacted:github-token:1]"


def test_redact_replaces_every_secret_and_the_same_secret_by_the_same_marker():
    github, aws, other = TOKENS["GitHub Token"], TOKENS["AWS Access Key"], "ghp_" + "Z9y8" * 9
    body = f"{github} then {aws}, {github} again, then {other}".encode()
    markers = Markers()

    redacted, hits = Scanner().redact(body, "body", markers)

    assert redacted == (b"[bottle:redacted:github-token:1] then [bottle:redacted:aws-access-key:1], "
                        b"[bottle:redacted:github-token:1] again, then [bottle:redacted:github-token:2]")
    assert [(hit.detector, hit.offset) for hit in hits] == [
        ("GitHub Token", 0), ("AWS Access Key", body.index(aws.encode())),
        ("GitHub Token", body.index(github.encode(), 1)), ("GitHub Token", body.index(other.encode())),
    ]
    # a later request that carries them again (the whole conversation, resent) reads the same
    assert Scanner().redact(f"{other} {github}".encode(), "body", markers)[0] == (
        b"[bottle:redacted:github-token:2] [bottle:redacted:github-token:1]")


def test_redact_leaves_data_without_secrets_as_it_is():
    body = b'{"content": "nothing to see"}'
    assert Scanner().redact(body, "body", Markers()) == (body, [])


def test_secrets_that_overlap_are_replaced_as_one():
    token = TOKENS["GitHub Token"]  # ghp_A1b2A1b2...
    scanner = Scanner([("secret_patterns[0]", re.compile(rb"A1b2 tail")), ("secret_patterns[1]", re.compile(rb"b2A1b2"))])

    redacted, hits = scanner.redact(f"x {token} tail y".encode(), "body", Markers())

    assert redacted == b"x [bottle:redacted:github-token:1] y"
    assert [hit.detector for hit in hits] == ["GitHub Token"]


def test_in_a_keyword_pattern_only_the_secret_is_replaced():
    key = "Q" * 20 + "q/+" * 6 + "QQ"  # 40 characters, shaped like an AWS secret access key
    body = json.dumps({"aws_secret_key": key}).encode()

    redacted, [hit] = Scanner().redact(body, "body", Markers())

    assert json.loads(redacted) == {"aws_secret_key": "[bottle:redacted:aws-access-key:1]"}
    assert hit.offset == body.index(key.encode())


@pytest.mark.parametrize(
    "text, pattern",
    [  # each secret ends or begins inside an escape: replaced as found, the string would break
        # Square's alphabet has the backslash: the span ends between the two JSON writes for one
        ("sq0" + "csp-" + "c" * 42 + "\\", None),
        ("\n-corp-12345", rb"n-corp-[0-9]+"),  # the span begins at the n of a JSON \n
        ("\u00C0" + "123456", rb"C0[0-9]{6}"),  # the span begins among the digits of a JSON \u00C0
    ],
    ids=["ends-inside-an-escape", "begins-at-an-escaped-letter", "begins-inside-a-unicode-escape"],
)
def test_a_redacted_json_body_stays_json(text, pattern):
    body = json.dumps({"content": text}).replace("\\u00c0", "\\u00C0").encode()
    scanner = Scanner([("secret_patterns[0]", re.compile(pattern))] if pattern else [])

    redacted, hits = scanner.redact(body, "body", Markers())

    assert hits
    content = json.loads(redacted)["content"]
    assert "[bottle:redacted:" in content and text not in content


def test_redact_request_covers_url_headers_and_body():
    token, aws = TOKENS["GitHub Token"].encode(), TOKENS["AWS Access Key"].encode()
    headers = [(b"Host", b"api.example.com"), (b"X-Debug", b"Bearer " + token)]
    url = b"https://api.example.com/search?q=" + aws

    redacted = Scanner().redact_request(url, headers, b'{"t": "' + token + b'"}', Markers())

    assert redacted.url == b"https://api.example.com/search?q=[bottle:redacted:aws-access-key:1]"
    assert redacted.headers == [(b"Host", b"api.example.com"), (b"X-Debug", b"Bearer [bottle:redacted:github-token:1]")]
    assert redacted.body == b'{"t": "[bottle:redacted:github-token:1]"}'
    assert [(hit.detector, hit.location) for hit in redacted.hits] == [
        ("AWS Access Key", "url"), ("GitHub Token", "header x-debug"), ("GitHub Token", "body")]


def test_the_vendors_example_keys_are_not_secrets():
    access_key, secret_key = secrets_scan.EXAMPLE_KEYS[:2]
    fixture = f'[default]\naws_access_key_id = {access_key}\naws_secret_access_key = "{secret_key}"\n'
    assert Scanner().scan(fixture.encode()) is None
    # the same shapes, one letter off, are found: the key, and the secret by its keyword
    assert Scanner().scan(fixture.replace(access_key, access_key[:-1] + "Q").encode()).detector == "AWS Access Key"
    assert Scanner().scan(fixture.replace(secret_key, secret_key[:-1] + "Q").encode()).detector == "AWS Access Key"


def test_the_azurite_connection_string_is_not_a_secret():
    connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;{secrets_scan.EXAMPLE_KEYS[-1]};"
    assert Scanner().scan(connection.encode()) is None
    assert Scanner().scan(connection.replace("Eby8", "Fby8").encode()) is not None


def test_detectors_may_be_exempted_by_name_or_marker_spelling():
    body = f"{TOKENS['GitHub Token']} {TOKENS['AWS Access Key']}".encode()

    for name in ("GitHub Token", "github-token"):
        assert Scanner(exempt_detectors=[name]).scan(body).detector == "AWS Access Key"
    assert Scanner(exempt_detectors=["GitHub Token", "AWS Access Key"]).scan(body) is None


def test_a_value_exempted_is_no_secret_but_others_of_its_shape_are():
    fixture, real = TOKENS["GitHub Token"], "ghp_" + "Z9y8" * 9
    scanner = Scanner(exempt_values=[fixture])

    assert scanner.scan(f"fixture: {fixture}".encode()) is None
    assert scanner.scan(f"fixture: {fixture}, real: {real}".encode()).offset == len(f"fixture: {fixture}, real: ")


# -- the literal-prefix walk finds what finditer finds ---------------------------------------------------------------

CUSTOM = [  # a profile's patterns of each shape: a literal start (one that overlaps itself too), none, a
    # lookbehind, case-insensitive, one byte
    ("secret_patterns[0]", re.compile(rb"corp-(?:dev|prod)-([0-9]{6})")),
    ("secret_patterns[1]", re.compile(rb"aXaX[0-9]{4}")),
    ("secret_patterns[2]", re.compile(rb"[0-9a-f]{8}-tok")),
    ("secret_patterns[3]", re.compile(rb"(?<=key=)abc[0-9]+")),
    ("secret_patterns[4]", re.compile(rb"(?i)acme_[a-z]{10}")),
    ("secret_patterns[5]", re.compile(rb"Q[0-9]{3}\b")),
]


def _corpus() -> list[bytes]:
    """Bodies full of the detectors' prefixes: every token at the start, in the middle and at the end, glued
    to letters, escaped in JSON; prefixes that overlap (``ACAC...``) or repeat; base64 noise laced with
    prefixes and tokens, whole and cut short; random bytes."""
    rng = random.Random(13)
    tokens = [token.encode() for token in TOKENS.values()] + [b"corp-dev-123456", b"0123abcd-tok", b"key=abc12",
                                                             b"ACME_abcdefghij", b"Q123", b"aXaXaX1234"]
    prefixes = sorted({secrets_scan._literal_prefix(detector.regex) for detector in secrets_scan.builtin()} - {b""})
    bodies = []
    for token in tokens:
        escaped = json.dumps({"a": "\n" + token.decode()}).encode()
        first = b"\\u00%02x" % token[0]
        bodies += [token, b"x" + token + b"y", b"\n" + token, token + b"\n", escaped,
                   escaped.replace(token[:1], first, 1), token[:2] * 20 + token + token[:-1], token + token]
    for _ in range(40):
        pieces = []
        while sum(map(len, pieces)) < 20_000:
            pick = rng.random()
            if pick < 0.3:
                pieces.append(rng.choice(prefixes) * rng.randint(1, 3))
            elif pick < 0.5:
                token = rng.choice(tokens)
                pieces.append(token[: rng.randint(1, len(token))] if rng.random() < 0.5 else token)
            elif pick < 0.55:
                pieces.append(rng.choice([b"\\n", b"\\u0041", b"\\/", b'"', b" ", b"=", b"\\"]))
            else:
                pieces.append(base64.b64encode(rng.randbytes(rng.randint(1, 60)), altchars=rng.choice([None, b"-_"])))
        bodies.append(b"".join(pieces))
    return bodies + [rng.randbytes(100_000) for _ in range(5)]


CORPUS = _corpus()


def test_a_literal_prefix_is_what_every_match_begins_with():
    prefix = secrets_scan._literal_prefix
    assert prefix(re.compile(rb"(?:(ghp|gho)_x)")) == b"gh"
    assert prefix(re.compile(rb"(?:AKIA|ASIA)[0-9]")) == b"A"
    verbose = re.compile(rb"https://hooks\.slack  # a comment" b"\n" rb"\.com/[A-Z]", re.VERBOSE)
    assert prefix(verbose) == b"https://hooks.slack.com/"
    for none in (rb"(?i)abc", rb"(?i:ab)c", rb"(?<=x)abc", rb"\babc", rb"[ab]c", rb"a?b"):
        assert prefix(re.compile(none)) == b"", none


def _reference(scanner: Scanner) -> Scanner:
    """*scanner* as it was: regex.finditer for every detector, one by one, none left out by the prefilter."""
    scanner._needles = [None] * len(scanner._detectors)
    scanner._view = lambda raw, codec: (secrets_scan._View.of(raw, codec), None)
    return scanner


def test_the_detectors_that_share_a_prefix_share_a_walk():
    needles = dict(zip((detector.prefix for detector in secrets_scan.builtin()), Scanner()._needles))
    assert needles[b"gl"] == b"gl" and needles[b"GR1348941"] == b"GR1348941"  # GitLab's: one walk, and another
    assert needles[b"sk-ant-"] == needles[b"sk_live_"] == needles[b"sk-"] == b"sk"
    assert needles[b"gh"] == b"gh" and needles[b"github_pat_"] == b"github_pat_"
    assert needles[b"AC"] == b"AC" and needles[b"AccountKey="] == b"AccountKey=" and needles[b"A"] is None


def test_each_detector_finds_what_its_regex_finds():
    scanner = Scanner(CUSTOM)
    for needle, detectors in scanner._sharing.items():
        for data in CORPUS:
            found = secrets_scan._walk(data, needle, detectors)
            for index, detector in detectors.items():
                expected = [(match.span(), match.regs) for match in detector.regex.finditer(data)]
                assert [(match.span(), match.regs) for match in found[index]] == expected, detector


@pytest.mark.parametrize("prefilter_from", [0, secrets_scan.PREFILTER_FROM], ids=["prefiltered", "small"])
def test_scan_and_redact_find_what_finditer_over_every_detector_finds(prefilter_from, monkeypatch):
    monkeypatch.setattr(secrets_scan, "PREFILTER_FROM", prefilter_from)
    args = CUSTOM, ["corp-dev-123456"]
    found = {}
    for scanner in (Scanner(*args), _reference(Scanner(*args))):
        markers = Markers()
        found[scanner] = [
            (list(scanner._found(*scanner._view(data, codec), body)), scanner.scan(data, codec=codec, body=body),
             scanner.redact(data, "body", markers, codec, body=body))
            for data in CORPUS for codec in (None, secrets_scan._JSON, secrets_scan._PERCENT) for body in (True, False)]
    new, reference = found.values()
    assert new == reference
    assert sum(len(hits) for hits, _, _ in reference) > 1000  # the corpus is full of secrets


def test_the_sidecar_image_has_the_prefilter():
    """Without Hyperscan the scanner is right but five times slower: the image must have it."""
    assert isinstance(secrets_scan._prefilter(Scanner()._patterns), secrets_scan._Prefilter)


def test_the_prefilter_reports_every_detector_whose_regex_matches():
    """Hyperscan's prefilter mode reads the patterns its own way (PCRE's, approximately): on the corpus, in
    its bytes and as JSON decodes them, no built-in detector that finditer finds is left out."""
    scanner = Scanner()
    reported = 0
    for raw in CORPUS:
        for data in {raw, secrets_scan._View.of(raw, secrets_scan._JSON).data}:
            candidates = secrets_scan._prefilter(scanner._patterns).candidates(data)
            matching = {index for index, detector in enumerate(scanner._detectors) if detector.regex.search(data)}
            assert matching <= candidates, [scanner._detectors[index].name for index in matching - candidates]
            reported += len(matching)
    assert reported > 500


def test_a_large_body_without_secrets_is_scanned_by_no_detector(monkeypatch):
    scanner = Scanner()
    body = json.dumps({"messages": [{"content": Path(json.__file__).read_text() * 40}]}).encode()
    assert len(body) >= secrets_scan.PREFILTER_FROM
    detectors = range(len(scanner._detectors))
    assert scanner._view(body, None)[1] & set(detectors) == set()
    candidates = scanner._view(body + b" " + TOKENS["Slack Token"].encode(), None)[1]
    assert {scanner._detectors[index].name for index in candidates & set(detectors)} == {"Slack Token"}
    monkeypatch.setattr(secrets_scan, "_walk", None)  # no prefix is walked: no detector is tried
    assert scanner.scan(body) is None


def test_a_large_json_body_is_decoded_only_when_it_holds_an_escape(monkeypatch):
    """The prefilter's one pass says whether there is an escape to decode; a token written with one is found."""
    scanner, token = Scanner(), TOKENS["AWS Access Key"]
    text = Path(json.__file__).read_text() * 40
    escaped = json.dumps({"content": text + " @"}).encode().replace(b"@", b"\\u0041" + token[1:].encode())  # A
    hit = scanner.scan(escaped, codec=secrets_scan._JSON)
    assert hit is not None and hit.detector == "AWS Access Key"
    assert escaped[hit.offset:].startswith(b"\\u0041" + token[1:].encode())
    plain = json.dumps({"content": text + " " + token}).encode()
    monkeypatch.setattr(secrets_scan._View, "of", None)  # no decoding pass: the bytes are read as they are
    assert scanner.scan(plain, codec=secrets_scan._JSON).detector == "AWS Access Key"


def test_a_profiles_own_patterns_and_those_hyperscan_refuses_are_always_scanned(monkeypatch):
    monkeypatch.setattr(secrets_scan, "PREFILTER_FROM", 0)
    scanner = Scanner(CUSTOM)
    own = {index for index, detector in enumerate(scanner._detectors) if detector.name.startswith("secret_patterns")}
    assert len(own) == len(CUSTOM) and scanner._view(b"nothing here", None)[1] == own
    refused = secrets_scan._prefilter(((rb"x{1,100000}", 0), (rb"ghp_[0-9]{4}", 0), (rb"(?a)y", 0)))
    assert refused.candidates(b"nothing here") == {0, 2}
    assert refused.candidates(b"a ghp_1234 b") == {0, 1, 2}
    for data in (b"ab corp-prod-654321 cd", b"key=abc123"):
        assert scanner.scan(data) is not None
