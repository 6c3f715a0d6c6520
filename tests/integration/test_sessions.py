"""A bottle outlives its run: killed mid-session, it is resumed with its conversation and its files; stopped,
it is listed, resumed and deleted (``bottle.sessions``, ``bottle.cli.lifecycle``, the Docker backend's disks).

The real Claude Code, scripted through the fake Messages API, is the agent.
"""

import json
import signal
import threading

import pytest

from tests.support.fake_anthropic import FakeMessagesAPI, held, text, tool_use

pytestmark = pytest.mark.integration


def listed(home) -> dict[str, dict]:
    result = home.run("ls", "--json")
    assert result.returncode == 0, result.stderr
    return {entry["slug"]: entry for entry in json.loads(result.stdout)}


def tool_results(request) -> list[str]:
    """Every tool result the conversation of *request* carries, as text."""
    found = []
    for message in request.body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") == "tool_result":
                content = block["content"]
                found.append(content if isinstance(content, str) else FakeMessagesAPI.all_text(content))
    return found


def test_a_killed_run_is_resumed_with_its_conversation_and_its_files(home, fake_api, api_profile, engine):
    home.profile("default", api_profile())
    home.agent("writer", "Write notes.")
    release = threading.Event()
    fake_api.enqueue(tool_use("Bash", {"command": "echo first-draft > notes.txt && echo wrote"}), held(release))
    process = home.popen("run", "writer", "--name", "notes-1", "--prompt", "Write the first draft.")
    try:
        fake_api.wait_for(lambda r: r.main and tool_results(r), timeout=180)  # the draft is on disk
        process.send_signal(signal.SIGKILL)  # no teardown, no save
        process.wait(timeout=30)
        assert listed(home)["notes-1"]["status"] == "crashed"

        fake_api.enqueue(tool_use("Bash", {"command": "cat notes.txt"}), text("The draft is there."))
        before = len(fake_api.message_requests(main_only=True))
        resumed = home.run("resume", "notes-1", "--prompt", "go on")
    finally:
        release.set()
        if process.poll() is None:
            process.kill()

    assert resumed.returncode == 0, resumed.stderr
    assert "notes-1's last run was killed; what it left running is stopped first" in resumed.stderr
    first, *_ = fake_api.message_requests(main_only=True)[before:]
    said = FakeMessagesAPI.all_text(first)
    assert "Write the first draft." in said and "go on" in said, "the earlier turns did not come back"
    assert "wrote" in tool_results(first), "the earlier tool call is not in the resumed conversation"
    assert any("first-draft" in result for result in tool_results(fake_api.message_requests(main_only=True)[-1])), \
        "the file the agent wrote before the kill is gone"
    assert listed(home)["notes-1"]["status"] == "stopped"
    assert not engine.containers.list(all=True, filters={"label": "bottle.slug=notes-1"})


def test_a_stopped_bottle_is_listed_resumed_and_removed(home, fake_api, api_profile, engine):
    home.profile("default", api_profile())
    home.agent("keeper", "Keep notes.")
    fake_api.enqueue(tool_use("Bash", {"command": "mkdir -p ~/kept && echo in-home > ~/kept/a"}), text("Done."))
    first = home.run("run", "keeper", "--prompt", "Keep a note.")
    assert first.returncode == 0, first.stderr
    (slug,) = listed(home)
    assert f"bottle: bottle {slug} stopped: `bottle resume {slug}` goes on, `bottle rm {slug}` deletes it." in \
        first.stderr.splitlines()
    logs = home.run("logs", slug)
    assert logs.returncode == 0 and logs.stdout == first.stdout and "Done." in logs.stdout, logs.stderr
    entry = listed(home)[slug]
    assert (entry["status"], entry["agent"], entry["backend"]) == ("stopped", "keeper", "docker")
    table = home.run("ls").stdout.splitlines()
    assert table[0].split()[:4] == ["SLUG", "STATUS", "AGE", "AGENT"] and table[1].split()[:2] == [slug, "stopped"]

    home.profile("default", api_profile(extra='memory = "1g"'))
    fake_api.enqueue(tool_use("Bash", {"command": "cat ~/kept/a"}), text("Still there."))
    again = home.run("resume", slug, "--prompt", "Read the note.")
    assert again.returncode == 0, again.stderr
    changed = [line for line in again.stderr.splitlines() if line.startswith("bottle: since its last run: ")]
    assert len(changed) == 1 and changed[0].startswith("bottle: since its last run: resources.memory: ") \
        and changed[0].endswith(" -> '1g'"), again.stderr
    assert "in-home" in tool_results(fake_api.message_requests(main_only=True)[-1])[-1]

    removed = home.run("rm", slug)  # no gate: nothing of the work is only here by the plugins' account
    assert removed.returncode == 0, removed.stderr
    assert not engine.volumes.list(filters={"label": f"bottle.slug={slug}"})
    assert not (home.state / slug).exists()
    assert home.run("resume", slug).returncode == 2


def test_bad_names_and_unknown_bottles_are_refused_with_exit_2(home):
    for args, said in ((("run", "x", "--name", "Bad Name"), "Option --name: 'Bad Name' is not a bottle name"),
                       (("resume", "nope-1"), "No bottle 'nope-1'"),
                       (("rm", "nope-1"), "No bottle 'nope-1'"),
                       (("prune", "--older-than", "soon"), "Option --older-than: 'soon' is not a duration")):
        result = home.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert said in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_prune_removes_old_stopped_bottles_and_keeps_running_ones(home, fake_api, api_profile):
    home.profile("default", api_profile())
    home.agent("short", "Say done.")
    fake_api.enqueue(text("Done."))
    assert home.run("run", "short", "--name", "old-1", "--prompt", "hi").returncode == 0

    assert json.loads(home.run("prune", "--json").stdout) == {"removed": [], "kept": {}, "dry_run": False}
    dry = json.loads(home.run("prune", "--older-than", "0s", "--dry-run", "--json").stdout)
    assert dry == {"removed": ["old-1"], "kept": {}, "dry_run": True} and "old-1" in listed(home)
    assert home.run("prune", "--older-than", "0s").stdout.strip() == "removed old-1"
    assert listed(home) == {}


def test_resuming_a_running_bottle_starts_a_second_session_in_it(home, fake_api, api_profile):
    home.profile("default", api_profile())
    home.agent("twice", "Answer.")
    release = threading.Event()
    fake_api.enqueue(tool_use("Bash", {"command": "echo from-the-first > first.txt"}), held(release))
    process = home.popen("run", "twice", "--name", "twice-1", "--prompt", "First session.")
    try:
        fake_api.wait_for(lambda r: r.main and tool_results(r), timeout=180)
        fake_api.enqueue(tool_use("Bash", {"command": "cat first.txt"}), text("Second session done."))
        second = home.run("resume", "twice-1", "--prompt", "Second session.")
        assert listed(home)["twice-1"]["status"] == "running", "the second session stopped the bottle"
    finally:
        release.set()
        process.communicate(timeout=120)

    assert second.returncode == 0, second.stderr
    assert "bottle: twice-1 is running: a new session in it" in second.stderr
    assert "Second session done." in second.stdout
    last = fake_api.message_requests(main_only=True)[-1]
    assert "from-the-first" in tool_results(last)[-1], "the second session is not in the first one's bottle"
    assert process.returncode == 0
