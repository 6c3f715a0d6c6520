"""The smolvm backend with real bottles: the docker suites' end-to-end tests, and escapes.

Every test here but the first runs a bottle on ``--backend smolvm`` (through
``BOTTLE_BACKEND``) and skips, with the probe's reason, wherever a microVM
cannot boot (see ``tests/integration/backends.py``). The end-to-end tests are
the docker suite's own functions, collected again here with this module's
``home``; the escape checks go through ``bottle exec``, since the docker
suite's reach into the agent container does not apply to a VM.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.backends import require_backend, use_backend
from tests.integration.conftest import REAL_API_KEY
from tests.integration.test_run_e2e import (  # noqa: F401  (collected again, on smolvm)
    test_agent_runs_tools_as_non_root_in_workdir,
    test_claude_exit_code_becomes_bottles,
    test_prompt_and_skills_reach_the_model,
)
from tests.support.fake_anthropic import held

home = use_backend("smolvm")
LABEL = "bottle.backend=smolvm"


def test_doctor_names_smolvms_answer_within_20_seconds(tmp_path):
    """Cold (no cached probe), ``bottle doctor`` says whether smolvm can run, and why not."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BOTTLE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bottle", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    smolvm = json.loads(done.stdout)["backends"]["smolvm"]
    assert smolvm["reason"], "available or not, doctor must say why"
    assert elapsed < 20, f"bottle doctor took {elapsed:.1f} s"
    assert list((tmp_path / "cache" / "bottle" / "smolvm").glob("probe-*.json")), "the answer is cached"


@pytest.fixture(autouse=True)
def no_machine_left_behind(request):
    """Like ``nothing_left_behind``, for smolvm machines (only where smolvm runs)."""
    if "home" not in request.fixturenames:
        yield
        return
    require_backend("smolvm")
    import smol

    local = smol.ConnectOptions(target="local")
    assert smol.Machine.list(local, labels={"bottle.backend": "smolvm"}) == [], "leftover machines before the test"
    yield
    left = smol.Machine.list(local, labels={"bottle.backend": "smolvm"})
    for machine in left:
        smol.Machine.delete_by_name(machine.name, local)
    assert left == [], "the test left smolvm machines behind"


def _slug(home) -> str:
    listed = [b for b in json.loads(home.run("ls", "--json").stdout) if b["backend"] == "smolvm"]
    assert len(listed) == 1, listed
    return listed[0]["slug"]


def test_ls_exec_and_stop(home, fake_api, api_profile):
    release = threading.Event()
    home.skill("notes", "Keeps notes.")
    home.agent("held", "Wait.", skills=["notes"])
    home.profile("default", api_profile())
    fake_api.enqueue(held(release))
    process = home.popen("run", "held", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=180)
        slug = _slug(home)
        result = home.run("exec", slug, "--", "sh", "-c", "id -un; ls ~/.claude/skills")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["agent", "notes"]
        assert home.run("stop", slug).returncode == 0
        process.wait(timeout=120)
        assert [b for b in json.loads(home.run("ls", "--json").stdout) if b["backend"] == "smolvm"] == []
    finally:
        release.set()
        if process.poll() is None:
            process.communicate(timeout=120)


def test_escapes_from_a_microvm(home, fake_api, api_profile, host_gateway):
    """The guest reaches its sidecar's proxy and nothing else: not the host, not DNS, not UDP."""
    release = threading.Event()
    home.agent("inmate", "Hold still.")
    home.profile("default", api_profile())
    fake_api.enqueue(held(release))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    udp.settimeout(3)
    process = home.popen("run", "inmate", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=180)
        slug = _slug(home)

        def sh(script: str) -> tuple[int, str]:
            done = home.run("exec", slug, "--", "timeout", "10", "bash", "-c", script)
            return done.returncode, done.stdout + done.stderr

        api = f"https://{host_gateway}:{fake_api.port}"
        no_proxy = "env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy"
        escaped = []

        code, out = sh(f"{no_proxy} curl -sS -m 4 -k -o /dev/null {api}/")
        if code == 0:
            escaped.append(f"direct TCP to the host: {out}")
        code, out = sh("getent hosts deb.debian.org")
        if code == 0:
            escaped.append(f"DNS resolution of an outside name: {out}")
        sh(f"echo escape > /dev/udp/{host_gateway}/{udp.getsockname()[1]}")
        try:
            udp.recvfrom(100)
            escaped.append("UDP to the host arrived")
        except socket.timeout:
            pass
        code, out = sh("curl -sS -m 6 -o /dev/null -w '%{http_code}' https://not-allowed.bottle.test/")
        if code == 0 and not out.strip().endswith("403"):
            escaped.append(f"proxy let a non-allowed host through: {out}")
        assert escaped == []

        # The way out that is meant to work does: through the sidecar, real key injected.
        code, out = sh(
            f"curl -sS -m 6 -o /dev/null -w '%{{http_code}}' -H 'content-type: application/json' "
            f"-d '{{\"model\": \"m\", \"messages\": []}}' {api}/v1/messages/count_tokens"
        )
        assert (code, out.strip()) == (0, "200")
        counted = [r for r in fake_api.requests if r.path.startswith("/v1/messages/count_tokens")]
        assert counted and counted[-1].headers["x-api-key"] == REAL_API_KEY
    finally:
        release.set()
        process.communicate(timeout=120)
