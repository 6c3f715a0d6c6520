"""Lifecycle of a real bottle: provisioning order, ls/exec/stop/gc, and teardown
after SIGINT, SIGTERM, a raising provisioner and a crashed launcher."""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from bottle.hookspecs import PROVISION_ORDER
from tests.support.fake_anthropic import held

PROBE_DIR = Path(__file__).parents[1] / "support" / "probe_plugin"


@pytest.fixture
def probe(home, tmp_path):
    """Install the probe plugin (an entry point on PYTHONPATH) and return its log path."""
    log = tmp_path / "probe.jsonl"
    home.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROBE_DIR), home.env.get("PYTHONPATH")]))
    home.env["BOTTLE_PROBE_LOG"] = str(log)
    return log


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def running(home, fake_api, api_profile):
    """A `bottle run` held mid-session: the model's first answer waits for release."""
    release = threading.Event()
    home.skill("notes", "Keeps notes.")
    home.agent("held", "Wait for the model.", skills=["notes"])
    home.profile("default", api_profile(extra="cpus = 1.5\nmemory = \"768m\"\npids = 300"))
    fake_api.enqueue(held(release))
    process = home.popen("run", "held", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=120)
        yield process
    finally:
        release.set()  # let the session end normally, so that bottle tears down
        try:
            process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def _slug(home) -> str:
    listed = json.loads(home.run("ls", "--json").stdout)
    assert len(listed) == 1, listed
    return listed[0]["slug"]


def test_provisioners_run_in_core_order_after_plan_files(home, fake_api, api_profile, probe):
    home.skill("notes", "Keeps notes.")
    home.agent("ordered", "PROMPT-IN-GUEST", skills=["notes"])
    home.profile("default", api_profile())

    result = home.run("run", "ordered", "--prompt", "hi")

    assert result.returncode == 0, result.stderr
    calls = _calls(probe)
    assert [c["hook"] for c in calls] == [*PROVISION_ORDER, "bottle_started", "bottle_stopping"]
    guest = calls[0]
    assert guest["exit_code"] == 0, guest["stderr"]
    uid, skills_owner, prompt = guest["stdout"].split("\n", 2)
    assert (uid, skills_owner) == ("1000", "agent")
    assert prompt.strip() == "PROMPT-IN-GUEST"


def test_raising_provisioner_leaves_nothing(home, fake_api, api_profile, probe, engine):
    home.agent("raiser", "x")
    home.profile("default", api_profile())
    home.env["BOTTLE_PROBE_RAISE"] = "bottle_provision_skills"

    result = home.run("run", "raiser", "--prompt", "hi")

    assert result.returncode != 0
    assert "probe plugin raising in bottle_provision_skills" in result.stderr
    assert [c["hook"] for c in _calls(probe)][-1] == "bottle_stopping"
    assert not fake_api.message_requests(), "the agent must not start after a provisioner failed"
    # nothing_left_behind (autouse) asserts the engine holds nothing labelled


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_session_tears_down(running, signum, code, engine):
    assert engine.containers.list(filters={"label": "bottle.slug"}), "the bottle should be running"
    running.send_signal(signum)
    running.wait(timeout=60)
    assert running.returncode == code


def test_ls_exec_limits_and_stop(running, home, engine):
    slug = _slug(home)
    result = home.run("exec", slug, "--", "sh", "-c", "id -un; ls ~/.claude/skills")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["agent", "notes"]

    config = engine.containers.get(f"bottle-{slug}").attrs["HostConfig"]
    assert (config["NanoCpus"], config["Memory"], config["PidsLimit"]) == (1_500_000_000, 768 * 2**20, 300)

    stopped = home.run("stop", slug)  # through the run, which ends as when the agent exits
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{slug} stopped"
    assert running.wait(timeout=60) == 143
    assert f"bottle: bottle {slug} stopped" in running.stderr.read()
    (entry,) = json.loads(home.run("ls", "--json").stdout)
    assert (entry["slug"], entry["status"]) == (slug, "stopped")
    assert not engine.containers.list(all=True, filters={"label": f"bottle.slug={slug}"})
    assert home.run("stop", slug).stdout.strip() == f"{slug} is not running"


def test_gc_stops_what_a_killed_launcher_left_and_keeps_its_volumes(running, home, engine):
    slug = _slug(home)
    running.send_signal(signal.SIGKILL)  # no chance to tear down
    running.wait(timeout=30)
    assert json.loads(home.run("ls", "--json").stdout)[0]["status"] == "crashed"

    result = home.run("gc", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"stopped": [slug]}
    (entry,) = json.loads(home.run("ls", "--json").stdout)
    assert entry["status"] == "stopped"
    assert not engine.containers.list(all=True, filters={"label": f"bottle.slug={slug}"})
    assert engine.volumes.list(filters={"label": f"bottle.slug={slug}"}), "gc deleted the agent's home and workdir"


def test_gc_spares_a_live_bottle(running, home):
    slug = _slug(home)
    assert json.loads(home.run("gc", "--json").stdout) == {"stopped": []}
    assert _slug(home) == slug


def test_a_dying_sidecar_stops_the_bottle_with_its_reason(running, home, engine):
    (sidecar,) = [c for c in engine.containers.list(filters={"label": "bottle.role=sidecar"})]
    # The egress proxy dies (as it would on a crash); the init reports it and exits.
    sidecar.exec_run(["sh", "-c", "kill -KILL $(pgrep -f bottle_egress_sidecar.main)"])

    running.wait(timeout=60)

    stderr = running.stderr.read()
    assert running.returncode == 1, stderr
    assert "sidecar died" in stderr and "service egress exited" in stderr, stderr
    assert "Traceback" not in stderr
