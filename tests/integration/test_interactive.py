"""An interactive session, in a real terminal (tmux), opens straight at Claude Code's prompt:
no onboarding, no question about the (placeholder) API key."""

import os
import shlex
import subprocess
import time

import pytest

from tests.support.collection import require
from tests.support.fake_anthropic import text

REPLY = "Hello from the fake model, interactively."


def _screen(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "bottle"], capture_output=True, text=True).stdout


def _wait_screen(tmux: list[str], needle: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(tmux)
        if needle in screen:
            return screen
        time.sleep(0.5)
    pytest.fail(f"{needle!r} never showed; the screen was:\n{_screen(tmux)}")


def exit_session(tmux: list[str]) -> None:
    """/exit in Claude Code, and wait until its terminal is gone (bottle tore down)."""
    subprocess.run([*tmux, "send-keys", "-t", "bottle", "/exit", "Enter"], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run([*tmux, "has-session", "-t", "bottle"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, _screen(tmux)
        time.sleep(0.5)


def test_interactive_session_opens_at_the_prompt(home, fake_api, api_profile, tmp_path, engine):
    home.profile("default", api_profile())
    home.agent("talk", "Be brief.")
    fake_api.enqueue(text(REPLY))
    screen = say_hello_interactively(home, tmp_path, engine, "talk")
    assert "API key" not in screen and "text style" not in screen.lower()
    main = fake_api.message_requests(main_only=True)
    assert main and "Say hello" in fake_api.all_text(main[0])


def say_hello_interactively(home, tmp_path, engine, agent: str) -> str:
    """``bottle run AGENT`` in a tmux terminal: wait for the prompt (no dialog before it), say
    hello, wait for :data:`REPLY`, /exit, wait for the teardown; the screen that showed the reply."""
    require(subprocess.run(["which", "tmux"], capture_output=True).returncode == 0, "tmux is not installed")
    script = tmp_path / "session.sh"
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in home.env.items())
    script.write_text(f"{exports}cd {shlex.quote(str(home.project))}\nexec {shlex.join(home.command('run', agent))}\n")
    tmux = ["tmux", "-L", f"bottle-test-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "bottle", "-x", "140", "-y", "45", f"bash {script}"], check=True)
    try:
        _wait_screen(tmux, "bypass permissions on")  # the prompt, with no dialog before it
        subprocess.run([*tmux, "send-keys", "-t", "bottle", "Say hello", "Enter"], check=True)
        screen = _wait_screen(tmux, REPLY)
        exit_session(tmux)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)  # SIGHUP, if still running
        deadline = time.monotonic() + 60  # a hung-up bottle tears down too
        while engine.containers.list(all=True, filters={"label": "bottle.slug"}) and time.monotonic() < deadline:
            time.sleep(0.5)
    return screen
