"""The allowlist of a running bottle changes live, without restarting the agent."""

import json

from tests.integration.test_escape import Bottled
from tests.support.fake_anthropic import FakeMessagesAPI


def test_allow_then_deny_while_running(home, engine, fake_api, api_profile, host_gateway, upstream_ca):
    home.profile("default", api_profile())
    home.agent("live", "Hold still.")
    with FakeMessagesAPI(host="0.0.0.0", tls=(upstream_ca.cert, upstream_ca.key)) as docs:
        rule = f"{host_gateway}:{docs.port}"
        url = f"{docs.url_for(host_gateway)}/v1/messages/count_tokens"
        bottle = Bottled(home, engine, fake_api).start("live")
        try:
            before = bottle.curl(url, "-d", "{}")
            allowed = home.run("egress", "allow", bottle.slug, rule)
            during = bottle.curl(url, "-d", "{}")
            denied = home.run("egress", "deny", bottle.slug, rule)
            after = bottle.curl(url, "-d", "{}")
            bad = home.run("egress", "allow", bottle.slug, "https://x/y")
        finally:
            bottle.stop()

    assert before[1].strip().endswith("403") or before[0] != 0
    assert allowed.returncode == 0, allowed.stderr
    assert during == (0, "200"), during
    assert denied.returncode == 0, denied.stderr
    assert after[1].strip().endswith("403") or after[0] != 0
    assert bad.returncode == 2 and "HOST" in bad.stderr and "Traceback" not in bad.stderr
    events = json.loads(home.run("audit", bottle.slug, "--json").stdout)
    decisions = [
        (e["source"], e["decision"])
        for e in events
        if (e.get("host"), e.get("port")) == (host_gateway, docs.port) or e["source"] == "operator"
    ]
    assert ("operator", "rule-added") in decisions and ("operator", "rule-removed") in decisions
    assert ("egress", "allowed") in decisions and ("egress", "blocked") in decisions
