"""Limits by default: attacks on the host's resources from inside a real bottle, as the agent user.

The profile sets no limit, so bottle's built-in ones for this host apply
(``bottle.limits``). Every attack is bounded: it stops by itself a little past
the limit, so that in a bottle without limits it ends (and the test fails)
instead of taking the host down. Under the limits each must stop at them,
and the host must go on answering while the attack runs: the engine, and a
command this process starts.
"""

import io
import subprocess
import tarfile

import pytest

from bottle.limits import Host, MiB, built_in, size_bytes
from tests.integration.test_escape import Bottled

LIMITS = built_in(Host.this_one())
RELEASE = "release-the-attack"  # made in the agent's home by the test: the held attack ends

#: Forks children that sleep until there are *attempts* of them or a fork fails;
#: says how many and what the pids cgroup counts, holds them until the test makes
#: the file *release*, then kills them.
FORK_BOMB = r"""
my ($attempts, $release) = @ARGV;
$| = 1;
my (@children, $why);
for (1 .. $attempts) {
    my $pid = fork;
    if (!defined $pid) { $why = "$!"; last }
    if ($pid == 0) { exec "sleep", "600"; exit 1 }
    push @children, $pid;
}
sub slurp { open(my $file, "<", $_[0]) or return "?"; my $text = <$file>; chomp $text; $text }
my $cgroup = -e "/sys/fs/cgroup/pids.max" ? "/sys/fs/cgroup" : "/sys/fs/cgroup/pids";
printf "forked=%d current=%s max=%s why=%s\n", scalar @children, slurp("$cgroup/pids.current"),
    slurp("$cgroup/pids.max"), $why // "";
select(undef, undef, undef, 0.1) until -e $release;
kill "KILL", @children;
waitpid($_, 0) for @children;
print "released\n";
"""

#: Holds ever more memory, 64 MiB at a time, saying how much, up to *target* bytes.
MEMORY_HOG = r"""
my ($target) = @ARGV;
$| = 1;
my ($held, @blocks) = (0);
while ($held < $target) { push @blocks, "x" x (64 << 20); $held += 64 << 20; print $held >> 20, "\n" }
print "done\n";
"""


@pytest.fixture
def bottle(home, engine, fake_api, api_profile):
    home.profile("default", api_profile())
    home.agent("hog", "Hold still.")
    bottled = Bottled(home, engine, fake_api).start("hog")
    yield bottled
    bottled.stop()


def host_answers(engine) -> bool:
    """The host goes on: its engine answers, and this process can start a command."""
    return engine.ping() and subprocess.run(["true"]).returncode == 0


def stream(bottle, argv: list[str]):
    """Run *argv* as the agent; its exec id, and its output line by line as it comes."""
    api = bottle.engine.api
    exec_id = api.exec_create(bottle.agent.id, argv, user="agent")["Id"]

    def lines():
        buffer = b""
        for chunk in api.exec_start(exec_id, stream=True):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            yield from (line.decode() for line in complete)

    return exec_id, lines()


def guest_home(container) -> str:
    return next(item[5:] for item in container.attrs["Config"]["Env"] if item.startswith("HOME="))


def put_file(container, path: str) -> None:
    """Make an empty file in the container without a process in it (the engine writes it)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        info = tarfile.TarInfo(path.lstrip("/"))
        archive.addfile(info, io.BytesIO(b""))
    container.put_archive("/", data.getvalue())


def test_a_fork_bomb_stops_at_the_pids_limit(bottle, engine):
    attempts = LIMITS.pids + 256
    home = guest_home(bottle.agent)
    exec_id, lines = stream(bottle, ["timeout", "300", "perl", "-e", FORK_BOMB, str(attempts), f"{home}/{RELEASE}"])
    report = dict(field.split("=", 1) for field in next(lines).split(" ", 3))  # why= comes last, with spaces
    answered = host_answers(engine)  # while the bomb's children hold every pid the bottle may have
    put_file(bottle.agent, f"{home}/{RELEASE}")
    rest = list(lines)

    assert int(report["forked"]) < attempts, f"nothing stopped the fork bomb: {report}"
    assert report["max"] == str(LIMITS.pids) and int(report["current"]) <= LIMITS.pids, report
    assert report["why"] == "Resource temporarily unavailable", report
    assert answered, "the host did not answer during the fork bomb"
    assert rest == ["released"] and engine.api.exec_inspect(exec_id)["ExitCode"] == 0, rest
    assert bottle.sh("true")[0] == 0, "the bottle does not work after the fork bomb"


def test_a_memory_hog_stops_at_the_memory_limit(bottle, engine):
    limit = size_bytes(LIMITS.memory)
    target = limit + 512 * MiB
    exec_id, lines = stream(bottle, ["timeout", "300", "perl", "-e", MEMORY_HOG, str(target)])
    held, answered = [], None
    for line in lines:
        held.append(line.strip())
        if answered is None and line.strip().isdigit() and int(line) * MiB >= limit // 2:  # well into the attack
            answered = host_answers(engine)
    code = engine.api.exec_inspect(exec_id)["ExitCode"]
    _, oom = bottle.sh("cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null")
    kills = [int(line.split()[1]) for line in oom.splitlines() if line.startswith("oom_kill ")]

    assert "done" not in held, f"the hog held {target >> 20} MiB: nothing stopped it"
    assert code == 137, f"the hog was not killed (exit code {code}): {held[-3:]}"
    assert int(held[-1]) * MiB <= limit, held[-3:]
    assert kills and kills[0] >= 1, f"the memory cgroup killed nothing: {oom}"
    assert answered, "the host did not answer during the memory hog"
    processes = [" ".join(process) for process in bottle.agent.top()["Processes"]]
    assert any("--dangerously-skip-permissions" in process for process in processes), "the hog took the agent along"


@pytest.fixture
def small_disk(home, engine, fake_api, api_profile):
    """A bottle whose profile sets `disk`, small enough to fill in a test."""
    home.profile("default", api_profile(extra=f'disk = "{SMALL_DISK}"'))
    home.agent("filler", "Hold still.")
    bottled = Bottled(home, engine, fake_api).start("filler")
    yield bottled
    bottled.stop()


SMALL_DISK = "512m"


@pytest.mark.parametrize("where", ["workdir", "home", "/tmp"])
def test_writing_past_the_disk_bound_fails(small_disk, engine, where):
    bottle = small_disk
    bottle.agent.reload()
    quota = (bottle.agent.attrs["HostConfig"].get("StorageOpt") or {}).get("size")
    bound = int(quota) if quota and where == "/tmp" else size_bytes(SMALL_DISK)
    path = {"workdir": bottle.agent.attrs["Config"]["WorkingDir"], "home": guest_home(bottle.agent)}.get(where, where)
    _, out = bottle.sh(
        f"head -c {bound + 64 * MiB} /dev/zero 2>&1 > {path}/fill; echo rc=$?; stat -c size=%s {path}/fill; "
        f"rm {path}/fill",
        timeout=300,
    )
    lines = out.splitlines()
    written = next(int(line[5:]) for line in lines if line.startswith("size="))

    assert "rc=0" not in lines, f"{bound + 64 * MiB} bytes went into {path}: nothing bounds the disk"
    assert any("No space left on device" in line or "quota exceeded" in line for line in lines), out
    assert written <= bound, out
    assert bottle.sh("true")[0] == 0, "the bottle does not work after filling its disk"
