"""Fixtures for the unit tests, the core's and the plugins': an isolated home, manifest writers, the real CLI.

Each unit-test directory's ``conftest.py`` imports them (``__all__``).

Every unit test runs in an isolated home (autouse): ``HOME``, ``XDG_CONFIG_HOME``,
``XDG_STATE_HOME`` and ``XDG_CACHE_HOME`` point into a tmp dir, the working directory is a fresh
project dir and no ``BOTTLE_*`` variable leaks in from the caller's shell, so
nothing here ever reads or writes the real user's configuration. The host's
``ANTHROPIC_API_KEY`` is a test value and ``CLAUDE_CODE_OAUTH_TOKEN`` is unset.
"""

__all__ = ["Home", "UNIT_API_KEY", "home", "plugin_profile", "plugins", "run_bottle", "usage_error", "write"]

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from bottle.errors import UsageError

#: The host's ANTHROPIC_API_KEY in every unit test (a plan never holds it).
UNIT_API_KEY = "sk-ant-api03-unit-test-key-never-in-a-plan"


@dataclass
class Home:
    """The isolated world of one test, with writers for agents, profiles and skills."""

    home: Path
    config_home: Path  # $XDG_CONFIG_HOME
    state_home: Path  # $XDG_STATE_HOME
    project: Path  # the cwd: the repository under work

    @property
    def config_dir(self) -> Path:
        return self.config_home / "bottle"

    @property
    def state_root(self) -> Path:
        return self.state_home / "bottle"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def _agents_dir(self, where: str) -> Path:
        return {"repo": self.project / ".bottle", "config": self.config_dir}[where] / "agents"

    def _skills_dir(self, where: str) -> Path:
        return {"repo": self.project / ".bottle", "config": self.config_dir}[where] / "skills"

    def agent(self, name: str, prompt: str = "You are a test agent.", *, where: str = "repo",
              text: str | None = None, **front: object) -> Path:
        """Write agent *name*: front matter ``name: NAME`` plus *front*, body *prompt*.

        *text* replaces the whole file (for broken front matter).
        """
        if text is None:
            meta = yaml.safe_dump({"name": name, **front}, sort_keys=False)
            text = f"---\n{meta}---\n{prompt}\n"
        return write(self._agents_dir(where) / f"{name}.md", text)

    def profile(self, name: str, toml: str = "") -> Path:
        """Write bottle profile *name* (``bottles/NAME.toml`` in the config dir)."""
        return write(self.config_dir / "bottles" / f"{name}.toml", toml)

    def skill(self, name: str, *, where: str = "repo", files: dict[str, str] | None = None) -> Path:
        """Write a skill directory; *files* default to a SKILL.md (pass ``{}`` for none)."""
        directory = self._skills_dir(where) / name
        directory.mkdir(parents=True)
        for rel, content in ({"SKILL.md": f"# {name}\n"} if files is None else files).items():
            write(directory / rel, content)
        return directory

    def config(self, toml: str) -> Path:
        """Write ``$XDG_CONFIG_HOME/bottle/config.toml``."""
        return write(self.config_file, toml)

    def tree(self) -> dict[str, tuple[str, int]]:
        """Every path under the tmp dirs, with its type and mode: to prove there was no side effect."""
        out = {}
        for root in (self.home, self.config_home, self.state_home, self.project):
            for path in [root, *root.rglob("*")]:
                st = path.lstat()
                out[str(path)] = ("dir" if path.is_dir() else "file", st.st_mode)
        return out


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    base = tmp_path.resolve()  # messages hold resolved paths (Path.cwd())
    world = Home(home=base / "home", config_home=base / "config", state_home=base / "state", project=base / "project")
    for directory in (world.home, world.config_home, world.state_home, world.project):
        directory.mkdir()
    for var in [v for v in os.environ if v.startswith("BOTTLE_")]:
        monkeypatch.delenv(var)
    # The built-in default profile needs a credential: the caller's own must
    # neither leak in nor decide which one a plan uses.
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", UNIT_API_KEY)
    monkeypatch.setenv("HOME", str(world.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(world.config_home))
    monkeypatch.setenv("XDG_STATE_HOME", str(world.state_home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))  # smolvm's probe answers, image archives
    monkeypatch.chdir(world.project)
    return world


@pytest.fixture(scope="session")
def plugins():
    """The really installed plugins (docker, prompt, skills, ...), loaded once."""
    from bottle.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def plugin_profile(home, plugins) -> Callable[[str], object]:
    """``plugin_profile(name)``: the profile *name* as ``bottle run`` reads it, with the installed plugins' tables."""
    return lambda name: plugins.load_profile(name, home.config_dir)


@pytest.fixture
def usage_error() -> Callable[..., str]:
    """``usage_error(fn, *fragments)``: *fn()* raises UsageError whose message holds every fragment."""

    def check(fn: Callable[[], object], *fragments: object) -> str:
        with pytest.raises(UsageError) as info:
            fn()
        message = str(info.value)
        for fragment in fragments:
            assert str(fragment) in message, f"{fragment!r} not in message:\n{message}"
        return message

    return check


@pytest.fixture
def run_bottle(home: Home) -> Callable[..., tuple[int, str, str]]:
    """``run_bottle(*args, env={...})``: the real CLI in a subprocess, in the isolated home."""

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "bottle", *args],
            cwd=home.project,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run
