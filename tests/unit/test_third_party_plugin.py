"""The worked example of a third-party plugin (``tests/support/hello_plugin``), installed as any other is:
pluggy accepts every hook it implements, it provides its command, table and image part, it is blocked by
its name, its sidecar service answers with the greeting and audits it, and ``bottle hello`` lists the
bottles that have one. ``tests/integration/test_third_party.py`` runs it in a real bottle."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import typer

from bottle.plugins import command_names, load_plugins
from bottle_sidecar.audit import read_events

HELLO_DIR = Path(__file__).parents[1] / "support" / "hello_plugin"
HOOKS = ("bottle_plan_section", "bottle_provision", "bottle_register_commands", "bottle_register_profile_tables",
         "bottle_sidecar_image_parts", "bottle_sidecar_prepare", "bottle_sidecar_services")


@pytest.fixture
def hello(monkeypatch):
    """The hello plugin on sys.path, for load_plugins in this process; its modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(HELLO_DIR))
    yield
    for module in [name for name in sys.modules if name.startswith(("bottle_hello_plugin", "bottle_hello_sidecar"))]:
        del sys.modules[module]


def with_hello_path() -> str:
    return os.pathsep.join(filter(None, [str(HELLO_DIR), os.environ.get("PYTHONPATH")]))


def test_pluggy_accepts_every_hook_it_implements(hello):
    plugins = load_plugins()
    assert plugins.failures == {}
    plugins.manager.check_pending()
    (info,) = [info for info in plugins.info() if info.name == "hello"]
    assert (info.distribution, info.version) == ("bottle-hello-plugin", "0.1")
    assert info.hooks == HOOKS


def test_it_provides_its_command_table_and_image_part(hello):
    plugins = load_plugins()
    app = typer.Typer()
    plugins.register_commands(app)
    assert "hello" in command_names(app)
    info = {info.name: info for info in plugins.info()}["hello"]
    assert (info.commands, info.tables, info.sidecar_parts) == (("hello",), ("hello",), ("hello",))


def test_it_is_blocked_by_its_name(hello):
    plugins = load_plugins(disabled=["hello"])
    assert plugins.manager.is_blocked("hello")
    assert "hello" not in {info.name for info in plugins.info()}
    assert "bottle_hello_plugin" not in sys.modules


def test_a_profile_with_hello_plans_its_section_and_service(home, run_bottle):
    home.agent("greeter")
    home.profile("default", '[hello]\ngreeting = "Hi"\n')

    code, out, err = run_bottle("run", "greeter", "--dry-run", "--json", env={"PYTHONPATH": with_hello_path()})

    assert code == 0, err
    plan = json.loads(out)
    assert plan["sections"]["hello"] == {"kind": "bottle_hello_plugin.models:HelloPlan", "greeting": "Hi",
                                         "url": "http://sidecar:8900/"}  # read back as that class
    (service,) = [service for service in plan["sidecar"]["services"] if service["name"] == "hello"]
    assert (service["port"], service["part"], service["ready"]) == (8900, "hello", "bottle-hello: listening")


def test_a_profile_without_hello_has_neither(home, run_bottle):
    home.agent("plain")
    home.profile("default", "")

    code, out, err = run_bottle("run", "plain", "--dry-run", "--json", env={"PYTHONPATH": with_hello_path()})

    assert code == 0, err
    plan = json.loads(out)
    assert "hello" not in plan["sections"]
    assert "hello" not in {service["name"] for service in plan["sidecar"]["services"]}


def test_the_service_answers_every_get_with_the_greeting_and_audits_it(tmp_path):
    greeting = tmp_path / "hello.txt"
    greeting.write_text("Hi from the sidecar.")
    audit = tmp_path / "audit.sqlite"
    server = subprocess.Popen(
        [sys.executable, "-m", "bottle_hello_sidecar.server", "--listen-host", "127.0.0.1", "--port", "0",
         "--bottle", "b-1", "--greeting-file", str(greeting), "--audit", str(audit)],
        env={**os.environ, "PYTHONPATH": with_hello_path()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = server.stdout.readline()
        assert ready.startswith("bottle-hello: listening on 127.0.0.1:"), server.stderr.read()
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not the caller's proxy
        with direct.open(f"http://127.0.0.1:{ready.rsplit(':', 1)[1].strip()}/hi", timeout=10) as answer:
            assert answer.read() == b"Hi from the sidecar."
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
    (event,) = read_events(audit)
    assert (event["bottle"], event["source"], event["decision"], event["path"]) == ("b-1", "hello", "answered", "/hi")
    assert event["host"] == "127.0.0.1"


def test_the_service_says_why_it_cannot_start(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bottle_hello_sidecar.server", "--bottle", "b-1", "--port", "0",
         "--greeting-file", str(tmp_path / "missing.txt"), "--audit", str(tmp_path / "audit.sqlite")],
        env={**os.environ, "PYTHONPATH": with_hello_path()}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bottle-hello: cannot start:") and "missing.txt" in done.stderr


def test_the_command_lists_the_bottles_with_a_hello_section(home, run_bottle):
    for slug, sections in (("greeter-1", {"hello": {"greeting": "Hi", "url": "http://sidecar:8900/"}}),
                           ("plain-2", {})):
        state = home.state_root / slug
        state.mkdir(parents=True)
        (state / "plan.json").write_text(json.dumps({"slug": slug, "sections": sections}))
    (home.state_root / "greeter-1" / "hello-heard.txt").write_text("Hi")

    code, out, err = run_bottle("hello", "--json", env={"PYTHONPATH": with_hello_path()})

    assert code == 0, err
    assert json.loads(out) == [{"slug": "greeter-1", "greeting": "Hi", "heard": "Hi"}]
