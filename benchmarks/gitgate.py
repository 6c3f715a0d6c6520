"""What the git gate costs a push: through the gate against straight to upstream, in one run.

Two cases, each pushed as a new branch:
- 1,000 new commits (each changes one of 50 small files), the shape of a long
  agent session pushed at once;
- one commit adding a 50 MB file of random bytes: a 50 MB pack, every byte of
  it diffed (as text) and scanned for secrets by the gate (bytes no detector
  can match: see ``undetectable_random``).

Upstream is a local bare repository. So that neither push finds the other's
objects already there, it exists twice, identical: the direct push goes to one
copy, the gate (``python -m bottle_gitgate_sidecar.gitgate`` on 127.0.0.1, with its
default max_push_mb of 50) forwards to the other. Each round makes fresh
commits and pushes them both ways, in alternating order; the medians are
compared. Target: the gate at most 1.5 times the direct push.

Run: .venv/bin/python -m benchmarks.gitgate [--rounds N]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.5
COMMITS = 1000
BIG_BYTES = 50_000_000
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def git(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, input=input, capture_output=True, check=True).stdout


def fast_import(clone: Path, branch: str, commits: list[dict[str, bytes]]) -> None:
    """Make *commits* (each {path: content}) on *branch*, on top of main, in one fast-import."""
    stream = []
    for number, files in enumerate(commits, 1):
        parent = f":{number - 1}" if number > 1 else "refs/heads/main"
        stream.append(b"commit refs/heads/%s\nmark :%d\ncommitter bench <bench@example.com> %d +0000\n"
                      b"data 10\nbench %04d\nfrom %s\n" % (branch.encode(), number, 1700000000 + number,
                                                           number % 10000, parent.encode()))
        for path, content in files.items():
            stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content))
    git("fast-import", "--quiet", cwd=clone, input=b"".join(stream))


def many_commits(salt: str) -> list[dict[str, bytes]]:
    return [{f"src/file{n % 50}.txt": f"{salt} change {n}\n".encode() * 20} for n in range(COMMITS)]


#: Every byte but the newline with its high bit set: what every secret detector's pattern starts with is ASCII
#: (``AKIA``, ``ghp_``, ``eyJ``, ``-----BEGIN``), so no run of these bytes can match one, however random.
HIGH_BYTES = bytes(byte if byte == 0x0A else byte | 0x80 for byte in range(256))


def undetectable_random(size: int) -> bytes:
    """*size* random bytes that git cannot compress or find twice and the gate's scanner cannot mistake for a
    secret: plain ``os.urandom`` holds ``eyJ...``-shaped runs now and then, and a run that tripped the scanner
    made the benchmark fail at random."""
    return os.urandom(size).translate(HIGH_BYTES)


def big_commit(salt: str) -> list[dict[str, bytes]]:
    return [{f"data/{salt}.bin": undetectable_random(BIG_BYTES)}]


def start_gate(work: Path, upstream: Path) -> tuple[subprocess.Popen, str]:
    config = work / "gate.json"
    config.write_text(json.dumps({"bottle": "bench", "upstream": str(upstream), "protected": ["refs/heads/main"],
                                  "push_refs": ["refs/heads/bottle/*"], "fetch_refs": ["HEAD"]}))
    gate = subprocess.Popen(
        [sys.executable, "-m", "bottle_gitgate_sidecar.gitgate", "--listen-host", "127.0.0.1", "--listen-port", "0",
         "--repo", str(work / "gate.git"), "--config", str(config), "--audit", str(work / "audit.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in gate.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            return gate, f"http://{match.group(1)}/repo.git"
    raise SystemExit(f"the gate did not start (exit code {gate.wait()})")


def timed_push(clone: Path, remote: str, refspec: str) -> float:
    start = time.perf_counter()
    git("push", "--quiet", remote, refspec, cwd=clone)
    return time.perf_counter() - start


def run(rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gitgate-bench-"))
    gate = None
    try:
        seed = work / "seed"
        seed.mkdir()
        git("init", "--quiet", "-b", "main", cwd=seed)
        for n in range(200):
            (seed / f"src/file{n}.txt").parent.mkdir(exist_ok=True)
            (seed / f"src/file{n}.txt").write_text(f"base {n}\n" * 20)
        git("add", ".", cwd=seed)
        git("commit", "--quiet", "-m", "base", cwd=seed)
        direct, forwarded = work / "direct.git", work / "forwarded.git"
        for upstream in (direct, forwarded):
            git("clone", "--quiet", "--bare", str(seed), str(upstream), cwd=work)
        gate, url = start_gate(work, forwarded)
        clone = work / "clone"
        git("clone", "--quiet", url, str(clone), cwd=work)
        cases = {"1000 commits": many_commits, "50 MB": big_commit}
        samples: dict[str, dict[str, list[float]]] = {case: {"direct": [], "gate": []} for case in cases}
        for round_ in range(rounds):
            for index, (case, make) in enumerate(cases.items()):
                branch = f"bench-{index}-{round_}"
                fast_import(clone, branch, make(f"r{round_}"))
                order = [("direct", str(direct)), ("gate", "origin")]
                for way, remote in order if round_ % 2 == 0 else reversed(order):
                    samples[case][way].append(timed_push(clone, remote, f"{branch}:refs/heads/bottle/{branch}"))
        report = {"rounds": rounds, "target_ratio": TARGET, "git": git("--version", cwd=work).decode().strip()}
        for case, times in samples.items():
            direct_s, gate_s = statistics.median(times["direct"]), statistics.median(times["gate"])
            report[case] = {"direct_s": round(direct_s, 3), "gate_s": round(gate_s, 3),
                            "added_s": round(gate_s - direct_s, 3), "ratio": round(gate_s / direct_s, 2),
                            "within_target": gate_s / direct_s <= TARGET,
                            "samples_s": {way: [round(t, 3) for t in values] for way, values in times.items()}}
        return report
    finally:
        if gate is not None:
            gate.terminate()
            gate.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(run(parser.parse_args().rounds), indent=2))


if __name__ == "__main__":
    main()
