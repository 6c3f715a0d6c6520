"""Credentials go to exactly one place (issue 10, item 5).

A credential route names a host, a port (443 unless it says) and optionally a
path prefix: the real key is injected there only. Another port of the same
host may be another server, and one that echoes what it gets would hand the
key to the agent; a path outside the prefix, or one a server would read as
outside (``/v1/../admin``), gets no key either. On every port of a route's
host the client's own credential headers are dropped: whatever the agent puts
there (its placeholder, a value it made up) never reaches the key's audience.
"""

import pytest

from test_egress_redaction import plan_policy
from test_egress_proxy import PLACEHOLDER, REAL_KEY, _audit_bytes, loopback, world  # noqa: F401

ROUTE = '[[credentials]]\nhost = "llm.example.com"\nheader = "x-api-key"\nenv = "LLM_KEY"\n'


# -- the profile, the plan, the policy --------------------------------------------------------------------------


def test_a_route_names_its_port_and_path_prefix_and_the_proxy_gets_them(home, plugins, monkeypatch):
    monkeypatch.setenv("LLM_KEY", "a value")
    policy = plan_policy(home, plugins, f'[egress]\nallow = ["llm.example.com:8443"]\n{ROUTE}port = 8443\n'
                                        'path = "/v1/"\n')

    route = policy.route_at("llm.example.com", 8443)
    assert (route.name, route.port, route.path) == ("LLM_KEY", 8443, "/v1/")
    assert policy.route_at("llm.example.com", 443) is None


def test_a_route_is_for_port_443_and_every_path_unless_it_says(home, plugins, monkeypatch):
    monkeypatch.setenv("LLM_KEY", "a value")
    route = plan_policy(home, plugins, ROUTE).route_at("llm.example.com", 443)
    assert (route.port, route.path) == (443, "")


def test_the_built_in_default_sends_the_key_to_the_api_on_443_only(home, plugins):
    policy = plan_policy(home, plugins, None)

    route = policy.route_at("api.anthropic.com", 443)
    assert (route.name, route.port, route.path) == ("ANTHROPIC_API_KEY", 443, "")
    assert policy.route_at("api.anthropic.com", 8443) is None


def test_routes_for_two_ports_of_one_host_are_two_places(home, plugin_profile):
    home.profile("base", f"{ROUTE}port = 8443\n")
    home.profile("work", 'extends = "base"\n[[credentials]]\nhost = "llm.example.com"\nenv = "OTHER_KEY"\n')

    routes = plugin_profile("work").table("credentials")

    assert sorted((route.port, route.env) for route in routes) == [(443, "OTHER_KEY"), (8443, "LLM_KEY")]


def test_a_childs_route_for_the_same_place_replaces_its_parents(home, plugin_profile):
    home.profile("base", f"{ROUTE}port = 8443\n")
    home.profile("work", f'extends = "base"\n{ROUTE}port = 8443\npath = "/v2/"\n')

    [route] = plugin_profile("work").table("credentials")

    assert (route.port, route.path) == (8443, "/v2/")


@pytest.mark.parametrize("toml, fragments", [
    (f"{ROUTE}port = 0\n", ["field `credentials.0.port`", "greater than or equal to 1"]),
    (f"{ROUTE}port = 70000\n", ["field `credentials.0.port`", "less than or equal to 65535"]),
    (f'{ROUTE}port = "https"\n', ["field `credentials.0.port`"]),
    (f'{ROUTE}port = "8443"\n', ["field `credentials.0.port`", "valid integer"]),
    (f'{ROUTE}path = "v1/"\n', ["field `credentials.0.path`", "a path prefix such as /v1/", "'v1/'"]),
    (f'{ROUTE}path = "/v1/../admin"\n', ["field `credentials.0.path`", "no . or .. segment"]),
    (f'{ROUTE}path = "/v1?beta=true"\n', ["field `credentials.0.path`"]),
    ('[[credentials]]\nhost = "llm.example.com:8443"\nenv = "LLM_KEY"\n', ["field `credentials.0.host`"]),
    (f"{ROUTE}port = 8443\n{ROUTE}port = 8443\n", ["field `credentials`", "llm.example.com:8443",
                                                   "one credential per host and port"]),
])
def test_a_bad_route_is_refused_naming_the_field(home, usage_error, toml, fragments, plugin_profile):
    path = home.profile("work", toml)
    usage_error(lambda: plugin_profile("work"), str(path), *fragments)


def test_the_cli_refuses_a_bad_route_with_exit_2(home, run_bottle):
    home.profile("work", f'{ROUTE}path = "v1"\n')
    home.agent("agent", bottle="work")

    code, _, err = run_bottle("run", "agent", "--dry-run")

    assert code == 2
    assert "credentials.0.path" in err and "a path prefix such as /v1/" in err


def test_the_plan_shows_where_each_credential_goes(home, run_bottle, monkeypatch):
    monkeypatch.setenv("LLM_KEY", "a value")
    home.profile("work", f'[egress]\nallow = ["llm.example.com:8443"]\n{ROUTE}port = 8443\npath = "/v1/"\n')
    home.agent("agent", bottle="work")

    code, table, err = run_bottle("run", "agent", "--dry-run")

    assert code == 0, err
    assert "llm.example.com:8443/v1/: x-api-key: $LLM_KEY" in table


# -- the real proxy ---------------------------------------------------------------------------------------------


def route_to(port: int, path: str = "") -> dict:
    return {"host": "localhost", "port": port, "path": path, "header": "x-api-key", "scheme": "",
            "name": "TEST_API_KEY", "placeholder": PLACEHOLDER}


def test_another_port_of_the_routes_host_gets_no_key_and_none_of_the_clients(world):
    # The route is for the scripted server's port; the recording upstream listens on another port of localhost.
    world.policy(loopback(world.https_port) + loopback(world.scripted.server_address[1]),
                 credentials=[route_to(world.scripted.server_address[1])])
    world.events()

    status, _ = world.https_request("/v1/messages", headers={"x-api-key": PLACEHOLDER, "authorization": "Bearer own"})

    assert status == 200
    seen = world.https.seen[-1]["headers"]
    assert "x-api-key" not in seen and "authorization" not in seen
    assert REAL_KEY not in repr(seen)
    assert not [e for e in world.events() if e["decision"] == "injected"]


@pytest.mark.parametrize("path, injected", [
    ("/v1/messages?beta=true", True), ("/v1", True),
    ("/v2/messages", False), ("/v1beta/messages", False), ("/", False),
    ("/v1/../echo", False), ("/v1/%2e%2e/echo", False), ("/v1/..%2Fecho", False),
])
def test_only_paths_under_the_prefix_get_the_key(world, path, injected):
    world.policy(loopback(world.https_port), credentials=[route_to(world.https_port, "/v1/")])
    world.events()

    conn = world.https_connection(world.https_port)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)  # the path as written: no client normalizes it
        conn.putheader("x-api-key", PLACEHOLDER)
        conn.endheaders()
        status = conn.getresponse().status
    finally:
        conn.close()

    assert status == 200
    seen = world.https.seen[-1]
    assert seen["path"] == path
    assert seen["headers"].get("x-api-key") == (REAL_KEY if injected else None)  # the placeholder is dropped too
    assert bool([e for e in world.events() if e["decision"] == "injected"]) is injected
    assert REAL_KEY.encode() not in _audit_bytes(world)
