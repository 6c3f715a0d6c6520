"""A third-party plugin in a real bottle, with no change under ``core/``: the hello plugin
(``tests/support/hello_plugin``, installed from tests/ through ``PYTHONPATH``) adds a sidecar
service, a command, a profile table and a provisioner.

``bottle image build`` with the plugin installed puts its service's package into a sidecar image
of the module's own; a bottle whose profile has ``[hello]`` runs the service, which the guest
reaches over the internal network; blocked by its name, the plugin is gone and its table is an
unknown field of the profile.
"""

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collection import require

HELLO_DIR = Path(__file__).parents[1] / "support" / "hello_plugin"
SIDECAR_TAG = "bottle/sidecar:hello-test"
GREETING = "Hello from a third-party sidecar service (marker 5d2e)."
BUILD_TIMEOUT = 1800


def with_hello(env: dict) -> dict:
    """*env* with the hello plugin installed: its directory, holding the dist-info, on PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(HELLO_DIR), env.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def hello_sidecar(engine) -> str:
    """A sidecar image with the hello part, built as a user would: `bottle image build` with the plugin installed."""
    done = subprocess.run(
        [sys.executable, "-m", "bottle", "image", "build", "--only", "sidecar", "--sidecar-tag", SIDECAR_TAG],
        env=with_hello(dict(os.environ)), capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )
    require("is not present locally" not in done.stderr, done.stderr.strip())  # no base image: bootstrap first
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    yield SIDECAR_TAG
    engine.images.remove(SIDECAR_TAG)


@pytest.fixture
def greeter(home, api_profile, hello_sidecar) -> Path:
    """A home with the plugin installed, its sidecar image, an agent and a profile with ``[hello]``; the profile's path."""
    home.env = with_hello(home.env)
    home.env["BOTTLE_SIDECAR_IMAGE"] = hello_sidecar
    home.agent("greeter", "Say hello.")
    return home.profile("default", api_profile(extra=f"[hello]\ngreeting = {json.dumps(GREETING)}\n"))


def plugins_json(home) -> dict:
    result = home.run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_guest_reaches_the_plugins_service_over_the_internal_network(greeter, home):
    result = home.run("run", "greeter", "--prompt", "hi")

    assert result.returncode == 0, result.stderr
    listed = home.run("hello", "--json")
    assert listed.returncode == 0, listed.stderr
    (bottle,) = json.loads(listed.stdout)
    assert (bottle["greeting"], bottle["heard"]) == (GREETING, GREETING)  # what the provisioner's curl got

    events = json.loads(home.run("audit", bottle["slug"], "--json").stdout)
    (answered,) = [event for event in events if event["source"] == "hello"]
    assert (answered["decision"], answered["method"], answered["path"]) == ("answered", "GET", "/")
    # From the guest's address on the internal network: not the sidecar itself, nor through its egress proxy.
    assert not ipaddress.ip_address(answered["host"]).is_loopback
    assert not [event for event in events if event["source"] == "egress" and event.get("host") == "sidecar"]


def test_plugins_lists_it_with_its_hooks_command_table_and_image_part(greeter, home):
    (hello,) = [plugin for plugin in plugins_json(home)["plugins"] if plugin["name"] == "hello"]
    assert hello["distribution"] == "bottle-hello-plugin"
    assert {"bottle_register_profile_tables", "bottle_plan_section", "bottle_sidecar_services",
            "bottle_sidecar_prepare", "bottle_provision", "bottle_register_commands"} <= set(hello["hooks"])
    assert (hello["commands"], hello["tables"], hello["sidecar_parts"]) == (["hello"], ["hello"], ["hello"])


def test_blocked_by_name_it_is_gone_and_its_table_is_an_unknown_field(greeter, home, fake_api):
    home.env["BOTTLE_DISABLE_PLUGINS"] = "hello"

    result = home.run("run", "greeter", "--prompt", "hi")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert str(greeter) in result.stderr and "field `hello`: unknown key" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not fake_api.requests, "nothing may start"
    report = plugins_json(home)
    assert "hello" not in {plugin["name"] for plugin in report["plugins"]}
    assert report["disabled"] == ["hello"]
