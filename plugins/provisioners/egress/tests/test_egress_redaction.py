"""One secret must not end the session: what a secret found in a request does.

A host's mode is "block" (a 403 that says which detector fired and how to
exempt it) or "redact" (each secret replaced by a stable marker, the request
sent on). The profile chooses it per host rule and per credential route, and
exempts detectors and values; the plan hands it to the proxy's policy, and the
real proxy (the module fixture of test_egress_proxy, one per module) applies it.
"""

import asyncio
import gzip
import json

import pytest
from mitmproxy.test import tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from bottle.prepare import build_plan
from bottle.settings import load_settings
from bottle_sidecar.audit import AuditLog, read_events
from bottle_egress_sidecar.egress import EgressAddon
from bottle_egress_sidecar.policy import Policy, PolicyError, PolicyFile
from bottle_sidecar.secrets_scan import EXAMPLE_KEYS
from bottle_egress.policy_file import policy_document
from test_egress_proxy import (  # world: the proxy in a subprocess, with its upstreams
    AWS_KEY, BODY_LIMIT, GITHUB_TOKEN, PLACEHOLDER, REAL_KEY, SLUG, _audit_bytes, loopback, world,  # noqa: F401
)

OTHER_TOKEN = "ghp_" + "Z9y8X7w6" * 4 + "V5u4"
MARKER = "[bottle:redacted:github-token:1]"  # GITHUB_TOKEN's: the first GitHub token the module's proxy replaces


def route(**fields) -> dict:
    return {"host": "llm.example.com", "header": "x-api-key", "scheme": "", "name": "LLM_KEY",
            "placeholder": "bottle-placeholder-llm_key", **fields}


def mode(rule: str, secret_mode: str) -> dict:
    return {"rule": rule, "mode": secret_mode}


# -- the policy -------------------------------------------------------------------------------------------------


def test_a_route_decides_for_its_host_then_the_last_matching_rule_then_block():
    policy = Policy.from_dict({
        "bottle": SLUG,
        "on_secret": [mode("*.example.com", "redact"), mode("git.example.com", "block"), mode("llm.example.com", "redact")],
        "credentials": [route(on_secret="block")],
    })

    assert policy.secret_mode("docs.example.com", 443, "https") == "redact"
    assert policy.secret_mode("git.example.com", 443, "https") == "block"  # a later rule
    assert policy.secret_mode("llm.example.com", 443, "https") == "block"  # its route, before any rule
    assert policy.secret_mode("docs.example.com", 8443, "https") == "block"  # the rule is for 443
    assert policy.secret_mode("example.org", 443, "https") == "block"  # no rule matches


def test_a_route_says_nothing_of_plain_http():
    policy = Policy.from_dict({"bottle": SLUG, "credentials": [route(on_secret="redact")]})

    assert policy.secret_mode("llm.example.com", 443, "https") == "redact"
    assert policy.secret_mode("llm.example.com", 80, "http") == "block"


def test_the_policy_reads_exemptions_by_detector_id():
    policy = Policy.from_dict({"bottle": SLUG, "secret_exempt": {"detectors": ["JSON Web Token", "github-token"],
                                                                  "values": ["a fixture"]}})

    assert policy.exempt_detectors == {"json-web-token", "github-token"}
    assert policy.exempt_values == ("a fixture",)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"on_secret": [mode("x.example.com", "allow")]}, "on_secret[0]: 'mode' must be one of block, redact, not 'allow'"),
        ({"on_secret": [mode("x.example.com/v1", "redact")]}, "on_secret[0]: 'rule': egress rule 'x.example.com/v1'"),
        ({"on_secret": [{**mode("x.example.com", "redact"), "why": "x"}]}, "on_secret[0]: unknown field(s) why"),
        ({"on_secret": {"x.example.com": "redact"}}, "'on_secret' must be a list of objects"),
        ({"credentials": [route(on_secret="drop")]}, "credentials[0]: 'on_secret' must be one of block, redact"),
        ({"secret_exempt": {"detectors": ["AWS Key"]}}, "secret_exempt.detectors[0]: 'AWS Key' is not a detector"),
        ({"secret_exempt": {"detector": []}}, "secret_exempt: unknown field(s) detector"),
        ({"secret_exempt": {"values": [""]}}, "secret_exempt.values: a value must not be empty"),
        ({"secret_exempt": {"values": "a fixture"}}, "'secret_exempt.values' must be a list of strings"),
        ({"secret_exempt": []}, "'secret_exempt' must be an object"),
    ],
)
def test_a_bad_mode_or_exemption_is_refused_naming_the_field(fields, message):
    with pytest.raises(PolicyError) as info:
        Policy.from_dict({"bottle": SLUG, **fields})
    assert message in str(info.value)


# -- the profile and the plan -----------------------------------------------------------------------------------


def test_the_profile_fields_are_read(home, plugin_profile):
    home.profile("work", """
        [egress]
        on_secret = { "*.example.com" = "redact", "git.example.com" = "block" }
        secret_exempt = { detectors = ["json-web-token"], values = ["a fixture"] }

        [[credentials]]
        host = "llm.example.com"
        header = "x-api-key"
        env = "LLM_KEY"
        on_secret = "redact"
    """.replace("\n        ", "\n"))

    profile = plugin_profile("work")

    assert list(profile.table("egress").on_secret.items()) == [("*.example.com", "redact"), ("git.example.com", "block")]
    assert profile.table("egress").secret_exempt.detectors == ("json-web-token",)
    assert profile.table("egress").secret_exempt.values == ("a fixture",)
    assert profile.table("credentials")[0].on_secret == "redact"


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ('[egress]\non_secret = { "x.example.com" = "drop" }', ["field `egress.on_secret.x.example.com`", "'block' or 'redact'"]),
        ('[egress]\non_secret = { "x.example.com/v1" = "redact" }', ["field `egress.on_secret`", "egress rule 'x.example.com/v1'"]),
        ('[egress]\nsecret_exempt = { detectors = ["AWS Key"] }',
         ["field `egress.secret_exempt.detectors`", "'AWS Key' is not a detector", "AWS Access Key"]),
        ('[egress]\nsecret_exempt = { values = [""] }', ["field `egress.secret_exempt.values`", "must not be empty"]),
        ('[egress]\nsecret_exempt = { detector = [] }', ["field `egress.secret_exempt.detector`", "unknown key"]),
        ('[[credentials]]\nhost = "h.example.com"\nenv = "K"\non_secret = "drop"', ["field `credentials.0.on_secret`"]),
    ],
)
def test_bad_profile_fields_are_refused_naming_the_field(home, usage_error, toml, fragments, plugin_profile):
    path = home.profile("work", toml)
    usage_error(lambda: plugin_profile("work"), str(path), *fragments)


def test_a_child_profile_adds_to_its_parents_modes_and_exemptions_and_its_rules_come_last(home, plugin_profile):
    home.profile("base", """[egress]
on_secret = { "a.example.com" = "block", "*.example.com" = "block" }
secret_exempt = { detectors = ["GitHub Token"], values = ["fixture one"] }
""")
    home.profile("work", """extends = "base"
[egress]
on_secret = { "a.example.com" = "redact" }
secret_exempt = { detectors = ["JSON Web Token"], values = ["fixture two"] }
""")

    egress = plugin_profile("work").table("egress")

    # a.example.com moves after the wildcard: the last match decides, so the child's entry does
    assert list(egress.on_secret.items()) == [("*.example.com", "block"), ("a.example.com", "redact")]
    assert egress.secret_exempt.detectors == ("GitHub Token", "JSON Web Token")
    assert egress.secret_exempt.values == ("fixture one", "fixture two")


def plan_policy(home, plugins, profile: str | None) -> Policy:
    """The policy the proxy reads for a plan of an agent in the bottle *profile* (None: the built-in default)."""
    if profile is not None:
        home.profile("work", profile)
    home.agent("agent", **({"bottle": "work"} if profile is not None else {}))
    plan = build_plan("agent", settings=load_settings(), plugins=plugins)
    return Policy.from_dict(policy_document(plan.slug, plan.sections["egress"], plan.sections["egress"].allow))


def test_the_model_api_redacts_unless_the_profile_says_otherwise(home, plugins):
    # the built-in default profile: the Anthropic API, with the user's key
    assert plan_policy(home, plugins, None).secret_mode("api.anthropic.com", 443, "https") == "redact"


@pytest.mark.parametrize("rule", ["api.anthropic.com", "*.anthropic.com"])
def test_a_profile_may_block_for_the_model_api(home, plugins, rule):
    policy = plan_policy(home, plugins, f'[egress]\nallow = ["api.anthropic.com"]\non_secret = {{ "{rule}" = "block" }}\n')
    assert policy.secret_mode("api.anthropic.com", 443, "https") == "block"


def test_the_plan_gives_the_proxy_every_mode_and_exemption(home, plugins):
    home.profile("base", '[egress]\non_secret = { "*.example.com" = "redact" }\n')
    policy = plan_policy(home, plugins, """extends = "base"
[egress]
allow = ["git.example.com", "llm.example.com"]
on_secret = { "git.example.com" = "block" }
secret_exempt = { detectors = ["json-web-token"], values = ["a fixture"] }

[[credentials]]
host = "llm.example.com"
header = "x-api-key"
env = "LLM_KEY"
on_secret = "block"
""")

    assert policy.secret_mode("docs.example.com", 443, "https") == "redact"  # the parent's rule
    assert policy.secret_mode("git.example.com", 443, "https") == "block"  # the child's, after it
    assert policy.secret_mode("llm.example.com", 443, "https") == "block"  # the route's
    assert policy.secret_mode("api.anthropic.com", 443, "https") == "redact"  # built in
    assert (policy.exempt_detectors, policy.exempt_values) == ({"json-web-token"}, ("a fixture",))


# -- the proxy --------------------------------------------------------------------------------------------------


def redacting(world) -> list[dict]:
    return [mode(f"localhost:{world.https_port}", "redact")]


def test_in_redact_mode_upstream_sees_markers_and_the_audit_log_no_secret(world):
    world.policy(loopback(world.https_port), on_secret=redacting(world))
    world.events()
    body = json.dumps({"messages": [{"role": "user", "content": f"aws {AWS_KEY} and {GITHUB_TOKEN}"},
                                    {"role": "user", "content": f"again: {GITHUB_TOKEN}"}]})

    status, _ = world.https_request(f"/v1/messages?t={GITHUB_TOKEN}", method="POST", body=body.encode(),
                                    headers={"content-type": "application/json", "x-debug": f"Bearer {GITHUB_TOKEN}"})

    assert status == 200
    seen = world.https.seen[-1]
    assert json.loads(seen["body"])["messages"] == [
        {"role": "user", "content": f"aws [bottle:redacted:aws-access-key:1] and {MARKER}"},
        {"role": "user", "content": f"again: {MARKER}"},
    ]
    assert seen["headers"]["content-length"] == str(len(seen["body"]))
    assert seen["headers"]["x-debug"] == f"Bearer {MARKER}"
    assert seen["path"] == f"/v1/messages?t={MARKER}"
    events = world.events()
    assert [e["decision"] for e in events if e["method"] == "POST"] == ["allowed", "redacted"]
    [redacted] = [e for e in events if e["decision"] == "redacted"]
    assert redacted["detail"]["redactions"] == [
        {"detector": "GitHub Token", "location": "url", "count": 1},
        {"detector": "GitHub Token", "location": "header x-debug", "count": 1},
        {"detector": "AWS Access Key", "location": "body", "count": 1},
        {"detector": "GitHub Token", "location": "body", "count": 2},
    ]
    assert redacted["path"] == "/v1/messages"
    audit = _audit_bytes(world)
    assert GITHUB_TOKEN.encode() not in audit and AWS_KEY.encode() not in audit


def test_a_secret_keeps_its_marker_in_later_requests(world):
    world.policy(loopback(world.https_port), on_secret=redacting(world))

    bodies = []
    for text in (f"first {GITHUB_TOKEN}", f"first {GITHUB_TOKEN}, then {OTHER_TOKEN}"):  # a conversation, resent
        assert world.https_request("/", method="POST", body=text.encode())[0] == 200
        bodies.append(world.https.seen[-1]["body"].decode())

    assert bodies == [f"first {MARKER}", f"first {MARKER}, then [bottle:redacted:github-token:2]"]


def test_a_gzipped_body_is_redacted_and_sent_gzipped_with_its_new_length(world):
    world.policy(loopback(world.https_port), on_secret=redacting(world))

    status, _ = world.https_request("/", method="POST", body=gzip.compress(f'{{"t": "{GITHUB_TOKEN}"}}'.encode()),
                                    headers={"content-encoding": "gzip"})

    assert status == 200
    seen = world.https.seen[-1]
    assert gzip.decompress(seen["body"]) == f'{{"t": "{MARKER}"}}'.encode()
    assert seen["headers"]["content-length"] == str(len(seen["body"]))


def test_in_block_mode_the_403_names_the_detector_and_how_to_exempt_it(world):
    world.policy(loopback(world.https_port))
    seen = len(world.https.seen)
    world.events()

    status, body = world.https_request("/upload", method="POST", body=f'{{"t": "{GITHUB_TOKEN}"}}'.encode())

    assert status == 403 and len(world.https.seen) == seen
    assert "GitHub Token in body" in body
    assert '[egress] secret_exempt = { detectors = ["GitHub Token"] }' in body
    assert "secret_exempt.values" in body
    assert f'[egress] on_secret = {{ "localhost:{world.https_port}" = "redact" }}' in body
    assert GITHUB_TOKEN not in body
    [event] = [e for e in world.events() if e["decision"] == "blocked"]
    assert (event["detail"]["check"], event["detail"]["detector"]) == ("secret", "GitHub Token")


@pytest.mark.parametrize(
    "route_mode, rule_mode, status", [("redact", "block", 200), ("block", "redact", 403)],
)
def test_a_credential_routes_own_mode_decides_for_its_host(world, route_mode, rule_mode, status):
    credential = {"host": "localhost", "port": world.https_port, "header": "x-api-key", "scheme": "",
                  "name": "TEST_API_KEY", "placeholder": PLACEHOLDER, "on_secret": route_mode}
    world.policy(loopback(world.https_port), credentials=[credential],
                 on_secret=[mode(f"localhost:{world.https_port}", rule_mode)])

    answer, body = world.https_request("/v1/messages", method="POST", body=f"t={GITHUB_TOKEN}".encode(),
                                       headers={"x-api-key": PLACEHOLDER})

    assert answer == status
    if status == 200:
        seen = world.https.seen[-1]
        assert (seen["body"], seen["headers"]["x-api-key"]) == (f"t={MARKER}".encode(), REAL_KEY)
    else:  # the hint names what decides: the route
        assert 'on_secret = "redact" in the [[credentials]] route for localhost' in body


@pytest.mark.parametrize("exempt", [{"detectors": ["GitHub Token"]}, {"values": [GITHUB_TOKEN]}],
                         ids=["by-detector", "by-value"])
def test_an_exempted_secret_goes_through_unchanged(world, exempt):
    world.policy(loopback(world.https_port), secret_exempt=exempt)

    assert world.https_request("/", method="POST", body=f"t={GITHUB_TOKEN}".encode())[0] == 200
    assert world.https.seen[-1]["body"] == f"t={GITHUB_TOKEN}".encode()


def test_a_vendors_example_key_is_no_secret(world):
    world.policy(loopback(world.https_port))
    body = f"aws_access_key_id = {EXAMPLE_KEYS[0]}".encode()

    assert world.https_request("/", method="POST", body=body)[0] == 200
    assert world.https.seen[-1]["body"] == body


# The addon alone, for what the proxy's upstreams cannot show.


class NoLookup:
    async def resolve(self, host, port):
        return []


def addon_for(tmp_path, **document) -> tuple[EgressAddon, AuditLog]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"bottle": SLUG, **document}))
    audit = AuditLog(tmp_path / "audit.sqlite", SLUG)
    return EgressAddon(PolicyFile(path), {}, audit, resolver=NoLookup(), body_limit=BODY_LIMIT), audit


def test_a_secret_in_the_host_name_is_blocked_even_in_redact_mode(tmp_path):
    # replaced, it would send the request to another host
    addon, _ = addon_for(tmp_path, allow=["http://*.example:22"], on_secret=[mode("http://*.example:22", "redact")])
    flow = tflow.tflow()
    flow.client_conn.sni = None
    flow.request.host = f"{GITHUB_TOKEN.lower()}.example"

    asyncio.run(addon.request(flow))

    assert flow.response.status_code == 403
    assert "the request carries what looks like a secret: GitHub Token in host at offset 0" in flow.response.text
    assert "never replaced by a marker, whatever on_secret says" in flow.response.text
    [event] = read_events(tmp_path / "audit.sqlite")
    assert (event["decision"], event["detail"]["detector"], event["path"]) == ("blocked", "GitHub Token", None)
    assert event["host"] == "[bottle:redacted:github-token:1].example"


def test_a_websocket_message_in_redact_mode_goes_on_with_markers(tmp_path):
    addon, _ = addon_for(tmp_path, on_secret=[mode("http://example.com", "redact")])
    flow = tflow.twebsocketflow()  # to example.com:80, plain
    flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, f"here: {GITHUB_TOKEN}".encode()))

    addon.websocket_message(flow)

    message = flow.websocket.messages[-1]
    assert not message.dropped
    assert message.content == f"here: {MARKER}".encode()
    [event] = read_events(tmp_path / "audit.sqlite")
    assert event["decision"] == "redacted"
    assert event["detail"]["redactions"] == [{"detector": "GitHub Token", "location": "websocket message", "count": 1}]
