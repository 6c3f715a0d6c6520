"""A port of a bottle on the host's loopback (``bottle.ports``): the agent's HTTP server is reached from
127.0.0.1 through the sidecar's relay, from nothing else, and only while the bottle runs."""

import json
import signal
import socket
import threading
import urllib.request

import pytest

from tests.integration.test_sessions import tool_results
from tests.support.fake_anthropic import held, tool_use

pytestmark = pytest.mark.integration

SERVE = ("mkdir -p /tmp/site && echo served-from-bottle > /tmp/site/index.html && "
         "(setsid python3 -m http.server 8123 --bind 0.0.0.0 --directory /tmp/site >/dev/null 2>&1 &) && "
         "for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/8123) 2>/dev/null && break; sleep 0.1; done; echo up")


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=20) as answer:
        return answer.read().decode()


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=5).close()
    except OSError:
        return True
    return False


def test_a_published_port_serves_the_agents_server_on_loopback_only(home, fake_api, api_profile, engine,
                                                                     host_gateway):
    home.profile("default", api_profile())
    home.agent("server", "Serve the site.")
    release = threading.Event()
    fake_api.enqueue(tool_use("Bash", {"command": SERVE}), held(release))
    process = home.popen("run", "server", "--name", "site-1", "--publish", "18123:8123", "--publish", "18124:8124",
                         "--prompt", "Serve it.")
    adder = None
    try:
        served = fake_api.wait_for(lambda r: r.main and tool_results(r), timeout=180)
        assert tool_results(served)[-1].strip().endswith("up"), tool_results(served)

        assert get(18123) == "served-from-bottle\n"
        listed = json.loads(home.run("ports", "site-1", "--json").stdout)
        assert sorted((entry["host"], entry["guest"]) for entry in listed) == [(18123, 8123), (18124, 8124)]
        assert refused(host_gateway, 18123), "the published port answers on an address other than loopback"
        with pytest.raises(OSError):  # nothing listens on 8124 in the bottle: the connection just ends
            get(18124)

        sandbox = engine.containers.get("bottle-site-1")
        inside = sandbox.exec_run(["bash", "-c", f"timeout 5 bash -c 'echo > /dev/tcp/{host_gateway}/18123' "
                                   "&& echo reached || echo blocked"], user="agent").output.decode()
        assert inside.strip().endswith("blocked"), f"the sandbox reaches the host's forwarder: {inside}"

        adder = home.popen("ports", "site-1", "--add", "18125:8123")
        assert adder.stdout.readline().strip() == "127.0.0.1:18125 -> site-1:8123 (Ctrl-C stops)"
        assert get(18125) == "served-from-bottle\n"
        adder.send_signal(signal.SIGINT)
        assert adder.wait(timeout=30) == 0
        assert refused("127.0.0.1", 18125)
        assert len(json.loads(home.run("ports", "site-1", "--json").stdout)) == 2
    finally:
        release.set()
        if adder is not None and adder.poll() is None:
            adder.kill()
        _, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert "bottle: port 8124 of site-1: nothing answers on port 8124 in the bottle" in stderr
    assert refused("127.0.0.1", 18123), "the port is still published after the bottle stopped"
    assert home.run("ports", "site-1").stdout.strip() == "no port of site-1 is published"


def test_bad_ports_are_refused_naming_the_option(home):
    for args, said in ((("run", "x", "--publish", "http"), "Option --publish: 'http' is not a port"),
                       (("run", "x", "--publish", "70000"), "Option --publish: '70000' is not a port")):
        result = home.run(*args)
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
