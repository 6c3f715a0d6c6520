"""Integration fixtures: a real engine, real images, an isolated bottle home,
the fake Messages API, and a check that every test leaves nothing behind.

Every test here carries the ``integration`` marker (the root ``conftest.py``).
Lines a test gives :func:`report` are printed at the end of the run, in
pytest's summary, whatever ``-q`` or ``-s``: CI's log shows them.
"""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.collection import require
from tests.support import hostnet
from tests.support.certs import TestCA
from tests.support.fake_anthropic import FakeMessagesAPI
from tests.support.profiles import KEY_ENV, fake_api_profile

LABEL = "bottle.slug"
#: The real key lives in the host environment of `bottle run` only.
REAL_KEY_ENV = KEY_ENV
REAL_API_KEY = "sk-ant-api03-" + "R3alKeyOnlyTheSidecarHolds" * 3 + "-AA"
REPORT = pytest.StashKey[list[str]]()
IMAGE_SETTINGS = ("BOTTLE_IMAGE", "BOTTLE_SIDECAR_IMAGE")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """A cache dir of the session's own (``XDG_CACHE_HOME``), for this process and every
    ``bottle`` it starts: smolvm's probe answers afresh, and never from or into the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture
def report(request):
    """``report(line)``: a line for the end of the run (see :func:`pytest_terminal_summary`)."""
    return request.config.stash.setdefault(REPORT, []).append


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("integration report")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def engine():
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as err:
        require(False, f"no Docker engine answers: {err}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def agent_image(engine):
    from docker.errors import ImageNotFound

    from bottle.settings import Settings

    tag = Settings().image
    try:
        engine.images.get(tag)
    except ImageNotFound:
        require(False, f"agent image {tag} is not built (run `bottle image bootstrap && bottle image build`)")
    return tag


@pytest.fixture(scope="session")
def host_gateway(engine) -> str:
    """An address of this machine that containers on any bridge network reach."""
    return hostnet.host_gateway(engine)


def _labelled(engine):
    return (
        engine.containers.list(all=True, filters={"label": LABEL}),
        engine.networks.list(filters={"label": LABEL}),
        engine.volumes.list(filters={"label": LABEL}),
    )


@pytest.fixture(autouse=True)
def nothing_left_behind(request, engine, tmp_path):
    """Every integration test must leave nothing running: no labelled container or network.

    A stopped bottle keeps its volumes (its home and workdir) by design; they are removed here
    as `bottle rm` removes them, loop devices included, and none of this test's disks may stay
    attached to one.
    """
    before = _labelled(engine)
    assert before == ([], [], []), f"leftovers before the test: {before}"
    yield
    containers, networks, volumes = _labelled(engine)
    for container in containers:
        container.remove(force=True)
    for network in networks:
        network.remove()
    from bottle_docker.backend import DockerBackend

    for slug in {volume.attrs["Labels"]["bottle.slug"] for volume in volumes}:
        DockerBackend().remove(slug)
    attached = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                              capture_output=True, text=True).stdout
    assert (containers, networks) == ([], []), "the test left labelled resources running"
    assert str(tmp_path) not in attached, f"a disk of the test is still on a loop device: {attached}"
    assert _labelled(engine)[2] == [], "a stopped bottle's volumes outlived `bottle rm`"


@dataclass
class BottleHome:
    """An isolated user: config dir, state dir, and a project dir to run in."""

    root: Path
    env: dict = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "config" / "bottle"

    @property
    def state(self) -> Path:
        return self.root / "state" / "bottle"

    @property
    def project(self) -> Path:
        return self.root / "project"

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def agent(self, name: str, prompt: str, **front) -> Path:
        lines = [f"name: {name}"] + [f"{key}: {json.dumps(value)}" for key, value in front.items()]
        return self.write(self.project / ".bottle" / "agents" / f"{name}.md", "---\n" + "\n".join(lines) + f"\n---\n{prompt}\n")

    def skill(self, name: str, description: str, body: str = "Follow the steps.") -> Path:
        return self.write(
            self.project / ".bottle" / "skills" / name / "SKILL.md",
            f"---\nname: {name}\ndescription: {description}\n---\n{body}\n",
        )

    def profile(self, name: str, toml: str) -> Path:
        return self.write(self.config / "bottles" / f"{name}.toml", toml)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bottle", *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args), cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args), cwd=self.project, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture
def home(tmp_path, agent_image) -> BottleHome:
    # No real credential of the caller's comes in: only the fake key. Nor any
    # setting, but the images under test (BOTTLE_SIDECAR_IMAGE=bottle/sidecar:dev
    # runs the suite against that sidecar image).
    env = {key: value for key, value in os.environ.items()
           if key in IMAGE_SETTINGS or not key.startswith("BOTTLE_") and key != "CLAUDE_CODE_OAUTH_TOKEN"}
    bottle_home = BottleHome(tmp_path)
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"))
    env[REAL_KEY_ENV] = REAL_API_KEY
    bottle_home.env = env
    bottle_home.project.mkdir(parents=True)
    # Without a default.toml the built-in profile would allow the real API: a
    # test that forgets to write its own profile gets one that allows nothing.
    bottle_home.profile("default", "# the integration fixture's: no host, no credential\n")
    return bottle_home


@pytest.fixture(scope="session")
def upstream_ca(tmp_path_factory, host_gateway):
    """A CA for the local upstream servers, and a certificate for the host's bridge address."""
    directory = tmp_path_factory.mktemp("upstream-pki")
    ca = TestCA.create()
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    cert, key = ca.issue(directory, [host_gateway])
    return SimpleNamespace(ca=ca, ca_file=directory / "ca.pem", cert=str(cert), key=str(key))


@pytest.fixture
def fake_api(upstream_ca):
    """The fake Messages API over HTTPS on every host address; it accepts only the real key."""
    with FakeMessagesAPI([], api_key=REAL_API_KEY, host="0.0.0.0", tls=(upstream_ca.cert, upstream_ca.key)) as api:
        yield api


@pytest.fixture
def api_profile(fake_api, host_gateway, upstream_ca):
    """Makes profiles under which Claude Code reaches the fake API only through the sidecar.

    The agent gets a placeholder key; the sidecar injects the real one, which
    it reads from the host's environment (see :func:`home`). *extra* goes at
    the top level of the profile; *allow* adds egress rules.
    """

    def make(extra: str = "", allow: tuple[str, ...] = ()) -> str:
        return fake_api_profile(fake_api, host_gateway, upstream_ca.ca_file, extra=extra, allow=allow)

    return make
