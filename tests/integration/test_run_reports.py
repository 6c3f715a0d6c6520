"""What `bottle run` tells the user at the end: one clean message for a missing
image, and after every run that got a sidecar, the slug, the pushed branches and
the command that shows the rest, on stderr (stdout is the agent's)."""

import json
import signal
import threading
import uuid

import pytest

from tests.integration.test_gitgate_bottle import refs, upstream  # noqa: F401  (a fixture)
from tests.support.fake_anthropic import held, text, tool_use

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind, setting", [("agent", "BOTTLE_IMAGE"), ("sidecar", "BOTTLE_SIDECAR_IMAGE")])
def test_a_missing_image_is_one_clean_message(home, fake_api, api_profile, engine, kind, setting):
    tag = f"bottle/{kind}:missing-{uuid.uuid4().hex[:8]}"
    home.env[setting] = tag
    home.profile("default", api_profile())
    home.agent("hello", "Say hello.")

    result = home.run("run", "hello", "--prompt", "hi")

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith(
        f"bottle: The {kind} image {tag!r} is not built. Run `bottle image build --only {kind} "
        f"{'--tag' if kind == 'agent' else '--sidecar-tag'} {tag}` (and `bottle image bootstrap` first where no "
        "registry is reachable).\n"
    )
    assert "bottle audit" not in result.stderr, "no summary of a bottle that never had a sidecar"
    assert not fake_api.message_requests()
    # nothing_left_behind (autouse) asserts the engine holds nothing labelled


def test_after_a_run_stderr_names_the_slug_the_pushed_branch_and_the_audit(home, fake_api, api_profile, upstream):  # noqa: F811
    home.profile("default", api_profile() + f'\n[git]\nupstream = "{upstream}"\n')
    home.agent("committer", "Commit your work.")
    fake_api.enqueue(
        tool_use("Bash", {"command": "echo done > result.txt && git add result.txt && git commit -qm 'Add result' && git push -q"}),
        tool_use("Bash", {"command": "curl -sS --max-time 5 https://example.org/ || true"}),  # blocked: not allowed
        text("Pushed."),
    )

    result = home.run("run", "committer", "--prompt", "Do the work and push it.")

    assert result.returncode == 0, result.stderr
    (branch,) = [ref.removeprefix("refs/heads/") for ref in refs(upstream) if ref.startswith("refs/heads/bottle/committer-")]
    slug = branch.removeprefix("bottle/")
    assert result.stderr.splitlines()[-3:] == [
        f"bottle: bottle {slug} stopped: `bottle resume {slug}` goes on, `bottle rm {slug}` deletes it.",
        f"bottle: pushed {branch} to {upstream}",
        f"bottle: what it did: bottle audit {slug} (1 blocked: add --blocked)",
    ]
    assert "bottle audit" not in result.stdout
    # The advice holds: the audit log outlived the bottle and shows the push.
    audit = home.run("audit", slug, "--json")
    assert audit.returncode == 0, audit.stderr
    assert [(e["decision"], e["path"]) for e in json.loads(audit.stdout) if e["source"] == "git"] == [
        ("allowed", f"refs/heads/{branch}")
    ]


def test_an_interrupted_run_still_says_what_is_left(home, fake_api, api_profile, upstream):  # noqa: F811
    home.profile("default", api_profile() + f'\n[git]\nupstream = "{upstream}"\n')
    home.agent("held", "Wait for the model.")
    release = threading.Event()
    fake_api.enqueue(held(release))
    process = home.popen("run", "held", "--prompt", "hi")
    try:
        fake_api.wait_for(lambda r: r.main, timeout=120)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()

    assert process.returncode == 143, err
    (slug,) = [state_dir.name for state_dir in home.state.iterdir()]
    assert err.splitlines()[-3:] == [
        f"bottle: bottle {slug} stopped: `bottle resume {slug}` goes on, `bottle rm {slug}` deletes it.",
        f"bottle: pushed nothing to {upstream}",
        f"bottle: what it did: bottle audit {slug}",
    ]
    assert "bottle audit" not in out


def test_timings_give_each_step_of_the_launch_and_stay_in_the_state_dir(home, fake_api, api_profile):
    home.profile("default", api_profile())
    home.agent("timed", "Say hello.")
    fake_api.enqueue(text("Hello."))

    shown = home.run("run", "timed", "--prompt", "hi", "--timings")
    fake_api.enqueue(text("Hello."))
    as_json = home.run("run", "timed", "--prompt", "hi", "--timings", "--json")

    assert shown.returncode == 0 and as_json.returncode == 0, shown.stderr + as_json.stderr
    assert shown.stdout.strip() == "Hello.", "stdout stays the agent's"
    names = [line.split()[1] for line in shown.stderr.splitlines() if " at " in line and " took " in line]
    for step in ("network", "sandbox", "sidecar", "agent", "teardown"):
        assert step in names, shown.stderr
    report = json.loads(as_json.stderr.strip().splitlines()[-1])
    steps = {step["name"]: step for step in report["steps"]}
    assert {"network", "sandbox", "sidecar: prepare (in the background)", "sidecar ready (waited for)",
            "provision: git", "agent", "teardown"} <= set(steps)
    ms = 0.002  # each figure is rounded to the millisecond
    first = report["steps"][0]  # the timeline starts with the process, not with the launch
    assert first["name"] == "before the launch: interpreter, imports, plan" and first["start_s"] == 0
    assert first["duration_s"] > 0 and steps["backend check"]["start_s"] >= first["duration_s"] - 0.02  # 10 ms ticks
    assert steps["sandbox"]["start_s"] >= steps["network"]["start_s"] + steps["network"]["duration_s"] - ms
    assert report["total_s"] >= steps["teardown"]["start_s"] + steps["teardown"]["duration_s"] - ms
    (kept,) = [path for path in home.state.glob("*/timings.json")
               if json.loads(path.read_text())["steps"] == report["steps"]]
    assert kept.parent.name.startswith("timed-")
