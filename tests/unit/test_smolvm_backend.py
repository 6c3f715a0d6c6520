"""The smolvm backend without a VM: the exact CLI argv and SDK calls of each lifecycle step.

The CLI/SDK boundary (:class:`bottle_smolvm.smolvm.Smolvm`) is replaced by a
recorder, the Docker engine by a small fake, and the core's sidecar start by a
stub; everything else is the real code.
"""

import contextlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
import threading
import _thread
from pathlib import Path
from types import SimpleNamespace

import pytest
import smol
from docker.errors import ImageNotFound
from smol import ExecOptions

import bottle.engine
import bottle.sidecar.runtime
from bottle.backend import Availability
from bottle.errors import EnvironmentProblem
from bottle.plan import GuestLayout, Plan, PlanFile, Resources, SidecarPlan
from bottle_smolvm import backend as smolvm_backend
from bottle_smolvm import images, probe
from bottle_smolvm.backend import EXTRACT_SCRIPT, SmolvmBackend, SmolvmBottle
from bottle_smolvm.smolvm import CliError, CliResult, Smolvm

SLUG = "tester-0a1b2c"
NAME = f"bottle-{SLUG}"
SIDECAR_IP = "192.168.16.2"
LABELS = {
    "bottle.slug": SLUG,
    "bottle.agent": "tester",
    "bottle.backend": "smolvm",
    "bottle.pid": "4321",
    "bottle.host": "builder",
}
ENV = {"HTTPS_PROXY": "http://sidecar:3128", "HOME": "/home/agent"}


def make_plan(tmp_path: Path, **overrides) -> Plan:
    fields = dict(
        slug=SLUG,
        agent="tester",
        agent_file=tmp_path / "tester.md",
        profile="default",
        profile_files=(),
        backend="smolvm",
        image="bottle/agent:latest",
        state_dir=tmp_path / "state",
        prompt_file=tmp_path / "state" / "system-prompt.md",
        system_prompt="",
        guest=GuestLayout(
            user="agent",
            uid=1000,
            home="/home/agent",
            workdir="/workspace",
            skills_dir="/home/agent/.claude/skills",
            prompt_path="/home/agent/.bottle/system-prompt.md",
        ),
        resources=Resources(cpus=1.5, memory="768m", pids=300),
        files=(),
        sidecar=SidecarPlan(image="bottle/sidecar:latest", audit_max_mb=64),
        agent_argv=("claude", "-p", "hi"),
        env=ENV,
        headless=True,
        labels=LABELS,
    )
    return Plan(**{**fields, **overrides})


# -- fakes -------------------------------------------------------------------------------------


class FakeStream:
    def __init__(self, events, calls):
        self._events, self.calls = iter(events), calls

    def __iter__(self):
        return self._events

    def kill(self):
        self.calls.append(("kill",))


class FakeMachine:
    def __init__(self, calls, *, exit_code=0, stdout="", stderr="", events=()):
        self.calls = calls
        self.exit_code, self.stdout, self.stderr, self.events = exit_code, stdout, stderr, list(events)

    def exec(self, argv, opts):
        self.calls.append(("exec", argv, opts))
        return smol.ExecResult(exit_code=self.exit_code, stdout=self.stdout, stderr=self.stderr)

    def write_file(self, path, data, mode):
        self.calls.append(("write_file", path, data, mode))

    def exec_stream(self, argv, opts):
        self.calls.append(("exec_stream", argv, opts))
        return FakeStream(self.events, self.calls)


class FakeSmolvm:
    """Records every CLI argv and SDK call, in one list, in order."""

    binary = "/x/smol-vmm"

    def __init__(self):
        self.calls: list = []
        self.machine = FakeMachine(self.calls)
        self.listed: list = []
        self.errors: dict[str, Exception] = {}

    def cli(self, args, *, what, timeout, check=True):
        self.calls.append(("cli", list(args)))
        if args[1] in self.errors:
            raise self.errors[args[1]]
        return CliResult(0, b"", "")

    def cli_interactive(self, args):
        self.calls.append(("tty", list(args)))
        return 7

    def connect(self, name):
        self.calls.append(("connect", name))
        return self.machine

    def list(self, labels):
        self.calls.append(("list", labels))
        return [m for m in self.listed if all(m.labels.get(k) == v for k, v in labels.items())]


def summary(labels=LABELS, state="running", name=NAME):
    return smol.MachineSummary(id=name, name=name, state=state, labels=dict(labels), created_at="2026-11-26T18:00:00+00:00")


class FakeImage:
    def __init__(self, image_id="sha256:" + "ab" * 32):
        self.id = image_id
        self.labels = {}
        self.saves = 0

    def save(self, named=False):
        self.saves += 1
        assert named is True
        yield from (b"docker-", b"save")


class FakeDocker:
    def __init__(self, events):
        self.events = events
        self.image = FakeImage()
        self.known = {"bottle/agent:latest": self.image, self.image.id: self.image}
        self.containers_listed: list = []
        self.networks_listed: list = []
        self.api = SimpleNamespace()
        self.images = SimpleNamespace(get=self._get)
        self.networks = SimpleNamespace(create=self._create_network, list=self._list_networks)
        self.containers = SimpleNamespace(list=self._list_containers)

    def _get(self, ref):
        if ref not in self.known:
            raise ImageNotFound(ref)
        return self.known[ref]

    def _create_network(self, name, **options):
        self.events.append(("network create", name, options))
        return SimpleNamespace(name=name)

    def _list_networks(self, filters):
        self.events.append(("network list", filters))
        return self.networks_listed

    def _list_containers(self, all, filters):
        self.events.append(("container list", filters))
        return self.containers_listed


class FakeSidecarContainer:
    name = f"bottle-{SLUG}-sidecar"

    def __init__(self, network):
        self.attrs = {"NetworkSettings": {"Networks": {network: {"IPAddress": SIDECAR_IP}}}}

    def reload(self):
        pass


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A backend on fakes; ``world.events`` holds Docker and teardown events, ``world.smolvm.calls`` smolvm's."""
    events: list = []
    fake = FakeSmolvm()
    docker = FakeDocker(events)

    monkeypatch.setattr(bottle.engine, "remove_network", lambda api, ref: events.append(("network removed", ref)))
    monkeypatch.setattr(bottle.engine, "remove_container", lambda api, ref: events.append(("container removed", ref)))
    backend = SmolvmBackend(smolvm=fake, docker=docker, cache=tmp_path / "cache")
    return SimpleNamespace(backend=backend, smolvm=fake, docker=docker, events=events, plan=make_plan(tmp_path),
                           tmp=tmp_path)


def open_bottle(world, stack, plan=None):
    """What launch does with a backend: its network, the sidecar started on it (a fake here), then the sandbox."""
    plan = plan or world.plan
    network = world.backend.open_network(plan, stack)
    world.events.append(("sidecar start", network))
    stack.callback(world.events.append, ("sidecar removed",))
    container = FakeSidecarContainer(network)
    sidecar = SimpleNamespace(address=lambda net: container.attrs["NetworkSettings"]["Networks"][net]["IPAddress"])
    return world.backend.open(plan, stack, network, sidecar)


def archive_path(world) -> str:
    return str(world.tmp / "cache" / "images" / ("ab" * 32 + ".tar"))


# -- argv of each CLI step ----------------------------------------------------------------------------


def test_create_args(world):
    args = smolvm_backend.create_args(world.plan, NAME, Path("/c/img.tar"), SIDECAR_IP)
    assert args == [
        "machine", "create", "--name", NAME, "--image", "/c/img.tar",
        "--label", "bottle.agent=tester", "--label", "bottle.backend=smolvm", "--label", "bottle.host=builder",
        "--label", "bottle.pid=4321", "--label", f"bottle.slug={SLUG}",
        "--net-backend", "virtio-net", "--allow-cidr", f"{SIDECAR_IP}/32", "--dns", SIDECAR_IP,
        "--cpus", "2", "--mem", "768",
        "-e", "HTTPS_PROXY=http://sidecar:3128", "-e", "HOME=/home/agent",
        "-u", "agent", "-w", "/workspace", "--", "sleep", "infinity",
    ]  # fmt: skip


def test_create_args_without_limits_leave_smolvm_defaults(world, tmp_path):
    plan = make_plan(tmp_path, resources=Resources())
    args = smolvm_backend.create_args(plan, NAME, Path("/c/img.tar"), SIDECAR_IP)
    assert "--cpus" not in args and "--mem" not in args


def test_other_cli_steps():
    assert smolvm_backend.start_args(NAME) == ["machine", "start", "--name", NAME]
    assert smolvm_backend.delete_args(NAME) == ["machine", "delete", "--name", NAME, "--force"]
    assert smolvm_backend.exec_tty_args(NAME, ["bash"], user="root", env={"A": "1"}, workdir="/w") == [
        "machine", "exec", "--name", NAME, "-i", "-t", "-u", "root", "-w", "/w", "-e", "A=1", "--", "bash",
    ]  # fmt: skip
    assert smolvm_backend.exec_tty_args(NAME, ["id"], user=None) == ["machine", "exec", "--name", NAME, "-i", "-t", "--", "id"]


@pytest.mark.parametrize("spec, mib", [(None, None), ("768m", 768), ("2g", 2048), ("1048576", 1), ("1500k", 2), ("4G", 4096)])
def test_memory_mib(spec, mib):
    assert smolvm_backend.memory_mib(spec) == mib


@pytest.mark.parametrize("cpus, count", [(None, None), (1.0, 1), (1.5, 2), (0.25, 1)])
def test_cpu_count(cpus, count):
    assert smolvm_backend.cpu_count(cpus) == count


# -- open: network, sidecar, machine, in that order, each registered for teardown ------------------------


def test_open_creates_network_sidecar_and_machine(world, tmp_path):
    stack = contextlib.ExitStack()
    bottle = open_bottle(world, stack)

    assert isinstance(bottle, SmolvmBottle) and bottle.slug == SLUG
    assert world.events == [
        ("network create", NAME, {"driver": "bridge", "internal": True, "labels": LABELS}),
        ("sidecar start", NAME),
    ]
    create = smolvm_backend.create_args(world.plan, NAME, Path(archive_path(world)), SIDECAR_IP)
    assert world.smolvm.calls == [
        ("list", {"bottle.backend": "smolvm", "bottle.slug": SLUG}),
        ("cli", create),
        ("cli", ["machine", "start", "--name", NAME]),
        ("connect", NAME),
        ("exec", ["sh", "-c", 'printf "%s\\t%s\\n" "$1" "$2" >> /etc/hosts', "sh", SIDECAR_IP, "sidecar"],
         ExecOptions(user="root", env=ENV, workdir=None)),
    ]  # fmt: skip
    assert Path(archive_path(world)).read_bytes() == b"docker-save"

    world.events.clear()
    world.smolvm.calls.clear()
    stack.close()
    assert world.smolvm.calls == [("cli", ["machine", "stop", "--name", NAME])], "its disks hold the agent's work"
    assert world.events == [("sidecar removed",), ("network removed", NAME)]


def test_a_stopped_machine_is_resumed_with_this_runs_sidecar_as_its_one_destination(world, tmp_path):
    world.smolvm.listed = [summary(state="stopped")]
    stack = contextlib.ExitStack()
    open_bottle(world, stack)

    update = ["machine", "update", "--name", NAME, "--reset-allow-list", "--allow-cidr", f"{SIDECAR_IP}/32",
              "--cpus", "2", "--mem", "768", *[arg for key, value in ENV.items() for arg in ("-e", f"{key}={value}")]]
    assert world.smolvm.calls[:3] == [("list", {"bottle.backend": "smolvm", "bottle.slug": SLUG}), ("cli", update),
                                      ("cli", ["machine", "start", "--name", NAME])]
    assert not (tmp_path / "cache" / "images").exists(), "a resumed machine needs no image export"
    assert smolvm_backend.update_args(world.plan, NAME, SIDECAR_IP) == update
    stack.close()


def test_stop_keeps_the_machine_and_removes_its_docker_side(world):
    world.smolvm.listed = [summary()]
    world.docker.containers_listed = [SimpleNamespace(id="c1", labels=LABELS)]
    world.docker.networks_listed = [SimpleNamespace(id="n1", attrs={"Labels": LABELS})]

    assert world.backend.stop(SLUG) is True

    assert world.smolvm.calls[-1] == ("cli", ["machine", "stop", "--name", NAME])
    assert world.events[-2:] == [("container removed", "c1"), ("network removed", "n1")]
    world.smolvm.listed = [summary(state="stopped")]
    assert [info.status for info in world.backend.list()] == ["stopped"]


def test_a_failed_start_tears_down_what_exists(world, tmp_path):
    world.smolvm.errors["start"] = CliError("start machine", "SMOLVM_ERROR", "no boot progress")
    stack = contextlib.ExitStack()
    with pytest.raises(CliError, match=r"smolvm could not start machine: \[SMOLVM_ERROR\] no boot progress"):
        open_bottle(world, stack)
    stack.close()
    assert world.smolvm.calls[-1] == ("cli", ["machine", "stop", "--name", NAME])
    assert world.events[-2:] == [("sidecar removed",), ("network removed", NAME)]


def test_teardown_tolerates_a_machine_already_gone(world):
    world.smolvm.errors["delete"] = CliError("delete machine", "NOT_FOUND", "no machine")
    world.backend._delete_machine(NAME)  # no error
    world.smolvm.errors["delete"] = CliError("delete machine", "STORAGE_ERROR", "disk")
    with pytest.raises(CliError):
        world.backend._delete_machine(NAME)


def test_the_image_is_exported_once_per_image_id(world, tmp_path):
    for _ in range(2):
        with contextlib.ExitStack() as stack:
            open_bottle(world, stack)
    assert world.docker.image.saves == 1


def test_a_missing_image_says_how_to_build_it(world, tmp_path):
    with pytest.raises(EnvironmentProblem, match="bottle image build"):
        open_bottle(world, contextlib.ExitStack(), make_plan(tmp_path, image="nope:latest"))


# -- the bottle handle ----------------------------------------------------------------------------------


@pytest.fixture
def handle(world):
    return SmolvmBottle(world.smolvm, world.plan, NAME)


def test_exec_through_the_sdk_as_the_guest_user_with_the_plan_env(world, handle):
    world.smolvm.machine.exit_code, world.smolvm.machine.stdout, world.smolvm.machine.stderr = 3, "out", "err"
    result = handle.exec(["id", "-u"], env={"X": "1"}, workdir="/tmp")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out", b"err")
    assert world.smolvm.calls == [
        ("connect", NAME),
        ("exec", ["id", "-u"], ExecOptions(user="agent", env={**ENV, "X": "1"}, workdir="/tmp")),
    ]
    handle.exec(["true"], user="root")
    assert world.smolvm.calls[-1] == ("exec", ["true"], ExecOptions(user="root", env=ENV, workdir=None))
    assert world.smolvm.calls.count(("connect", NAME)) == 1  # one SDK handle per bottle


def test_exec_machine_failure_is_an_environment_problem(world, handle):
    def broken(argv, opts):
        raise smol.SmolError("INTERRUPTED", "a stop cut the command off")

    world.smolvm.machine.exec = broken
    with pytest.raises(EnvironmentProblem, match=r"\[INTERRUPTED\] a stop cut the command off"):
        handle.exec(["true"])


def test_put_files_is_one_upload_and_one_extraction(world, handle, tmp_path):
    (tmp_path / "prompt.md").write_text("PROMPT")
    files = [PlanFile(host_path=tmp_path / "prompt.md", guest_path="/home/agent/.bottle/p.md", provider="prompt")]
    handle.put_files(files, uid=1000, gid=1000)

    (write,) = [c for c in world.smolvm.calls if c[0] == "write_file"]
    (extract,) = [c for c in world.smolvm.calls if c[0] == "exec"]
    _, staged, data, mode = write
    assert staged.startswith("/root/.bottle-files-") and staged.endswith(".tar") and mode == 0o600
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert members == {"home/agent/.bottle": (1000, 1000), "home/agent/.bottle/p.md": (1000, 1000)}
    assert extract == ("exec", ["sh", "-c", EXTRACT_SCRIPT, "sh", staged], ExecOptions(user="root", env=ENV, workdir=None))


def test_put_files_reports_a_failed_extraction(world, handle, tmp_path):
    world.smolvm.machine.exit_code, world.smolvm.machine.stderr = 2, "tar: No space left on device"
    with pytest.raises(EnvironmentProblem, match="No space left"):
        handle.put_files([], uid=1000, gid=1000)


def test_headless_agent_streams_through_the_sdk(world, handle, capsysbinary):
    world.smolvm.machine.events = [
        {"kind": "stdout", "data": "Hello "},
        {"kind": "stderr", "data": "warn\n"},
        {"kind": "stdout", "data": "world\n"},
        {"kind": "exit", "exit_code": 5},
    ]
    code = handle.run_agent(["claude", "-p", "hi"], env={"A": "1"}, interactive=False)
    assert code == 5
    out = capsysbinary.readouterr()
    assert (out.out, out.err) == (b"Hello world\n", b"warn\n")
    assert world.smolvm.calls == [
        ("connect", NAME),
        ("exec_stream", ["claude", "-p", "hi"], ExecOptions(user="agent", env={**ENV, "A": "1"}, workdir="/workspace")),
    ]


def test_headless_agent_stream_error(world, handle):
    world.smolvm.machine.events = [{"kind": "error", "message": "machine went away"}]
    with pytest.raises(EnvironmentProblem, match="machine went away"):
        handle.run_agent(["claude"], env={}, interactive=False)


def test_interrupt_kills_the_streamed_agent(world):
    """A Ctrl-C (or the sidecar watch) while the agent is silent kills it in the guest."""
    killed = threading.Event()

    class SilentAgent:
        def __iter__(self):
            return self

        def __next__(self):
            _thread.interrupt_main()  # what Ctrl-C does, while the agent prints nothing
            killed.wait(10)
            raise StopIteration

        def kill(self):
            world.smolvm.calls.append(("kill",))
            killed.set()

    with pytest.raises(KeyboardInterrupt):
        smolvm_backend.stream_to_terminal(SilentAgent)
    assert world.smolvm.calls == [("kill",)]


def test_interactive_agent_goes_through_the_cli_tty(world, handle, monkeypatch):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    code = handle.run_agent(["claude"], env={"A": "1"}, interactive=True)
    assert code == 7
    assert world.smolvm.calls == [
        ("tty", ["machine", "exec", "--name", NAME, "-i", "-t", "-u", "agent", "-w", "/workspace", "-e", "A=1", "--", "claude"])
    ]


def test_interactive_agent_needs_a_terminal(world, handle, monkeypatch):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: False))
    with pytest.raises(EnvironmentProblem, match="--prompt"):
        handle.run_agent(["claude"], env={}, interactive=True)



# -- every bottle: list, remove, exec ------------------------------------------------------------------


def test_list_finds_machines_by_label_and_what_crashed_runs_left(world):
    other = {**LABELS, "bottle.slug": "lone-1", "bottle.pid": "x"}
    net_only = {**LABELS, "bottle.slug": "net-2"}
    world.smolvm.listed = [summary(), summary(labels={"bottle.backend": "smolvm"}, name="unlabelled")]
    world.docker.containers_listed = [
        SimpleNamespace(labels={**LABELS, "bottle.role": "sidecar"}, status="running", attrs={"Created": "c"}),
        SimpleNamespace(labels={**other, "bottle.role": "sidecar"}, status="exited", attrs={"Created": "c2"}),
    ]
    world.docker.networks_listed = [SimpleNamespace(attrs={"Labels": net_only, "Created": "n"})]

    infos = {info.slug: info for info in world.backend.list()}

    assert set(infos) == {SLUG, "lone-1", "net-2"}
    mine = infos[SLUG]
    assert (mine.status, mine.backend, mine.agent, mine.launcher_pid, mine.launcher_host) == (
        "running", "smolvm", "tester", 4321, "builder")  # fmt: skip
    assert (infos["lone-1"].status, infos["lone-1"].launcher_pid) == ("sidecar exited", None)
    assert infos["net-2"].status == "network only"
    assert world.smolvm.calls == [("list", {"bottle.backend": "smolvm"})]
    assert ("container list", {"label": ["bottle.backend=smolvm"]}) in world.events


def test_remove_deletes_the_machine_and_its_docker_side(world):
    world.smolvm.listed = [summary()]
    world.docker.containers_listed = [SimpleNamespace(id="c1", labels=LABELS)]
    world.docker.networks_listed = [SimpleNamespace(id="n1", attrs={"Labels": LABELS})]

    assert world.backend.remove(SLUG) is True

    assert world.smolvm.calls == [
        ("list", {"bottle.backend": "smolvm", "bottle.slug": SLUG}),
        ("cli", ["machine", "delete", "--name", NAME, "--force"]),
    ]
    assert ("container list", {"label": ["bottle.backend=smolvm", f"bottle.slug={SLUG}"]}) in world.events
    assert world.events[-2:] == [("container removed", "c1"), ("network removed", "n1")]


def test_remove_of_nothing(world):
    assert world.backend.remove("ghost-000000") is False


def test_exec_interactive_with_a_terminal(world, monkeypatch):
    world.smolvm.listed = [summary()]
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    assert world.backend.exec_interactive(SLUG, ["bash"], user="root") == 7
    assert world.smolvm.calls[-1] == ("tty", ["machine", "exec", "--name", NAME, "-i", "-t", "-u", "root", "--", "bash"])


def test_exec_interactive_without_a_terminal_captures(world, monkeypatch, capsysbinary):
    world.smolvm.listed = [summary()]
    world.smolvm.machine.stdout, world.smolvm.machine.exit_code = "agent\n", 0
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: False))
    assert world.backend.exec_interactive(SLUG, ["id", "-un"], user=None) == 0
    assert capsysbinary.readouterr().out == b"agent\n"
    assert world.smolvm.calls[-2:] == [("connect", NAME), ("exec", ["id", "-un"], ExecOptions(user=None))]


@pytest.mark.parametrize("listed, message", [([], "No running bottle"), ([summary(state="stopped")], "is stopped")])
def test_exec_interactive_needs_a_running_bottle(world, listed, message):
    world.smolvm.listed = listed
    with pytest.raises(EnvironmentProblem, match=message):
        world.backend.exec_interactive(SLUG, ["bash"], user=None)


# -- availability -------------------------------------------------------------------------------------


def test_availability_is_the_probe_then_docker(world, monkeypatch):
    asked = []

    def fake_probe(cache, *, binary):
        asked.append((cache, binary()))
        return probe.ProbeResult(True, "a microVM booted in 0.8 s", "cache")

    monkeypatch.setattr(probe, "probe", fake_probe)
    first = world.backend.availability()
    assert first.ok and first.reason == f"smolmachines {probe.smolmachines_version()}: a microVM booted in 0.8 s"
    assert world.backend.availability() is first  # asked once per process
    assert asked == [(world.tmp / "cache", "/x/smol-vmm")]


@pytest.mark.parametrize("host_limit", [True, False])
def test_availability_says_why_not_and_whose_fault(world, monkeypatch, host_limit):
    result = probe.ProbeResult(False, "no /dev/kvm: ...", "host", host_limit=host_limit)
    monkeypatch.setattr(probe, "probe", lambda cache, *, binary: result)
    assert world.backend.availability() == Availability(False, "no /dev/kvm: ...", host_limit=host_limit)


def test_availability_needs_docker_for_the_sidecar(tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "probe", lambda cache, *, binary: probe.ProbeResult(True, "booted", "cache"))

    def no_engine(timeout):
        raise EnvironmentProblem("No Docker engine answers.")

    monkeypatch.setattr(bottle.engine, "docker_client", no_engine)
    result = SmolvmBackend(smolvm=FakeSmolvm(), cache=tmp_path).availability()
    assert not result.ok and result.reason == "a microVM boots, but the sidecar needs Docker: No Docker engine answers."
    assert not result.host_limit, "a missing engine is a broken setup, not a limit of the host"


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smolvm_backend.cache_dir() == tmp_path / "xdg" / "bottle" / "smolvm"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert smolvm_backend.cache_dir() == Path.home() / ".cache" / "bottle" / "smolvm"


# -- images --------------------------------------------------------------------------------------------


def test_old_archives_of_vanished_images_are_pruned(tmp_path):
    docker = FakeDocker([])
    directory = tmp_path / "images"
    directory.mkdir()
    stale = directory / ("cd" * 32 + ".tar")
    stale.write_bytes(b"old")
    alive = directory / (docker.image.id.split(":")[1] + ".tar")
    path, fresh = images.image_archive(docker, "bottle/agent:latest", directory)
    assert (path, fresh) == (alive, True)
    assert not stale.exists() and alive.read_bytes() == b"docker-save"
    assert images.image_archive(docker, "bottle/agent:latest", directory) == (alive, False)


# -- the real boundary: argv and SDK calls -------------------------------------------------------------


def test_cli_runs_with_json_errors_and_raises_with_smolvms_code(monkeypatch):
    ran = []
    stderr = (
        "note: no packed assets found for 'smol-vmm' (looked for...)\n"
        + json.dumps({"error": {"code": "NOT_FOUND", "message": "machine 'x' not found"}})
    )

    def run(argv, **kwargs):
        ran.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 1, b"", stderr.encode())

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(CliError) as info:
        Smolvm("/x/smol-vmm").cli(["machine", "delete", "--name", "x", "--force"], what="delete machine x", timeout=60)
    assert info.value.code == "NOT_FOUND"
    assert str(info.value) == "smolvm could not delete machine x: [NOT_FOUND] machine 'x' not found"
    assert ran == [(["/x/smol-vmm", "--error-format", "json", "machine", "delete", "--name", "x", "--force"],
                    {"stdin": subprocess.DEVNULL, "capture_output": True, "timeout": 60})]  # fmt: skip
    result = Smolvm("/x/smol-vmm").cli(["machine", "ls"], what="list", timeout=5, check=False)
    assert result.returncode == 1 and "no packed assets" not in result.stderr


def test_cli_timeout_is_an_environment_problem(monkeypatch):
    def run(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(EnvironmentProblem, match="no answer within 300 s"):
        Smolvm("/x/smol-vmm").cli(["machine", "start", "--name", "x"], what="start machine x", timeout=300)


def test_sdk_connect_and_list_are_local_and_never_wait_for_ports(monkeypatch):
    seen = []
    monkeypatch.setattr(smol.Machine, "connect", classmethod(lambda cls, name, conn: seen.append((name, conn)) or "m"))
    monkeypatch.setattr(smol.Machine, "list", staticmethod(lambda conn, labels: seen.append((conn, labels)) or []))
    boundary = Smolvm("/x/smol-vmm")
    assert boundary.connect(NAME) == "m"
    assert boundary.list({"bottle.backend": "smolvm"}) == []
    assert seen == [
        (NAME, smol.ConnectOptions(target="local", wait_for_ports=False)),
        (smol.ConnectOptions(target="local"), {"bottle.backend": "smolvm"}),
    ]


def test_cli_path_is_the_wheels_smolvm():
    from bottle_smolvm.smolvm import cli_path

    assert Path(cli_path()).name == "smol-vmm" and Path(cli_path()).parent.name == "smol"


# -- registration ------------------------------------------------------------------------------------------


def test_registered_as_backend_smolvm(plugins):
    assert plugins.backend("smolvm").name == "smolvm"
    (info,) = [i for i in plugins.info() if i.name == "smolvm"]
    assert info.distribution == "bottle-backend-smolvm"


def test_loading_the_plugin_imports_neither_the_backend_nor_the_sdk():
    code = textwrap.dedent(
        """
        import sys
        import bottle_smolvm.plugin
        heavy = [m for m in ("smol", "bottle_smolvm.backend", "docker") if m in sys.modules]
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_core_never_imports_the_plugin():
    core = Path(__file__).parents[2] / "core"
    offenders = [p for p in core.rglob("*.py") if "bottle_smolvm" in p.read_text()]
    assert offenders == []


# -- bottle cp ----------------------------------------------------------------------------------------


def run_here(calls):
    """A machine exec that runs the command on this host (sh, tar and base64 are the guest's too)."""

    def execute(argv, opts):
        calls.append(("exec", argv, opts))
        proc = subprocess.run(argv, input=(opts.stdin or "").encode(), capture_output=True)
        return smol.ExecResult(exit_code=proc.returncode, stdout=proc.stdout.decode(errors="replace"),
                               stderr=proc.stderr.decode(errors="replace"))

    return execute


@pytest.fixture
def running(world):
    world.smolvm.listed = [summary()]
    world.smolvm.machine.exec = run_here(world.smolvm.calls)
    return world


def test_copy_out_is_one_exec_as_the_guest_user_whose_tar_comes_back_whole(running, tmp_path):
    source = tmp_path / "guest" / "dir"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "bin").write_bytes(bytes(range(256)) * 40)  # not UTF-8: base64 keeps it whole
    (source / "link").symlink_to("sub/bin")

    data = b"".join(running.backend.copy_out(SLUG, str(source)))

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["dir/sub/bin"]).read() == bytes(range(256)) * 40
    assert set(members) == {"dir", "dir/sub", "dir/sub/bin", "dir/link"}
    assert members["dir/link"].issym() and members["dir/link"].linkname == "sub/bin"
    (call,) = [c for c in running.smolvm.calls if c[0] == "exec"]
    assert call == ("exec", ["sh", "-c", smolvm_backend.COPY_OUT_SCRIPT, "sh", str(source)], ExecOptions())
    assert call[2].user is None  # the machine's own user: the guest user it was created with


def test_copy_out_of_a_missing_path_is_file_not_found(running, tmp_path):
    with pytest.raises(FileNotFoundError):
        running.backend.copy_out(SLUG, str(tmp_path / "nothing"))


def test_copy_out_reports_a_failing_tar(running):
    # The script's pipeline ends in base64, so tar's failure is what it says on stderr.
    running.smolvm.machine.exec = lambda argv, opts: smol.ExecResult(exit_code=0, stdout="", stderr="tar exited 2")
    with pytest.raises(EnvironmentProblem, match="tar exited 2"):
        running.backend.copy_out(SLUG, "/workspace")


def test_copy_in_unpacks_the_stream_from_stdin_as_the_guest_user(running, tmp_path):
    from bottle.safe_tar import pack_path

    (tmp_path / "host" / "sub").mkdir(parents=True)
    (tmp_path / "host" / "sub" / "bin").write_bytes(bytes(range(256)))
    guest = tmp_path / "guest"
    guest.mkdir()

    running.backend.copy_in(SLUG, str(guest), pack_path(tmp_path / "host", "copy").chunks())

    assert (guest / "copy" / "sub" / "bin").read_bytes() == bytes(range(256))
    (call,) = [c for c in running.smolvm.calls if c[0] == "exec"]
    assert call[1] == ["sh", "-c", smolvm_backend.COPY_IN_SCRIPT, "sh", str(guest)]
    assert call[2].user is None and call[2].stdin.isascii()  # base64: the SDK's stdin takes text


def test_copy_in_needs_an_existing_directory(running, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError):
        running.backend.copy_in(SLUG, str(tmp_path / "nothing"), b"")
    with pytest.raises(NotADirectoryError):
        running.backend.copy_in(SLUG, str(tmp_path / "file"), b"")


@pytest.mark.parametrize("listed, message", [([], "No running bottle"), ([summary(state="stopped")], "is stopped")])
def test_copying_needs_a_running_bottle(world, listed, message):
    world.smolvm.listed = listed
    with pytest.raises(EnvironmentProblem, match=message) as caught:
        world.backend.copy_out(SLUG, "/workspace")
    assert caught.value.exit_code == 2
    with pytest.raises(EnvironmentProblem, match=message):
        world.backend.copy_in(SLUG, "/workspace", b"")


def test_copy_machine_failure_is_an_environment_problem(running):
    def broken(argv, opts):
        raise smol.SmolError("INTERRUPTED", "a stop cut the command off")

    running.smolvm.machine.exec = broken
    with pytest.raises(EnvironmentProblem, match=r"\[INTERRUPTED\]"):
        running.backend.copy_out(SLUG, "/workspace")
    with pytest.raises(EnvironmentProblem, match=r"\[INTERRUPTED\]"):
        running.backend.copy_in(SLUG, "/workspace", b"")


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_a_container_runtime_is_refused_naming_the_field(world, tmp_path, runtime):
    with pytest.raises(EnvironmentProblem, match=f"field `runtime`: {runtime} runs containers, and the smolvm backend"):
        open_bottle(world, contextlib.ExitStack(), make_plan(tmp_path).model_copy(update={"runtime": runtime}))
    assert world.events == [], "refused before anything is made"
