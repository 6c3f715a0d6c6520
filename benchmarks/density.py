"""Density: many bottles at once, each against one alone in the same run.

Prints, for the same agent image, sidecar image and fake Messages API:
- **start**: N headless ``bottle run --prompt`` started at once (every reply a
  short text, at once): the time until all N reached the API (ready) and until
  all N exited (finished), against one bottle alone; the ratio is N's time over
  one's, so 1.0 would be perfect overlap and N none;
- **memory**: each sidecar's memory (docker stats) once N are running and idle;
- **posts**: with the same N bottles held mid-session, one 8 MB POST from each
  agent through its own sidecar to one HTTPS upstream on this machine, all at
  once, against one bottle's POST alone: the time until all N were answered,
  and the throughput each saw.

Goals (issue "Speed and depth"): N=10 finished within 6 s and 3x one alone.

Everything the run starts is removed at the end (``bottle rm --force``).

Run: .venv/bin/python -m benchmarks.density [--bottles N] [--post-mb M]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from benchmarks.egress import CLIENT_JS, MiB, _numbered, _source_texts, memory, start_upstream
from tests.support.fake_anthropic import FakeMessagesAPI, held, text
from tests.support.hostnet import host_gateway
from tests.support.profiles import fake_api_profile

API_KEY = "sk-ant-api03-density-benchmark"
AGENT = "dense"


class Arrivals:
    """When the fake API's main requests arrived: the time the k-th came, polled every 10 ms."""

    def __init__(self, api: FakeMessagesAPI):
        self.api, self.times, self.done = api, [], threading.Event()
        self.start = time.perf_counter()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.done.is_set():
            count = len(self.api.message_requests(main_only=True))
            while len(self.times) < count:
                self.times.append(time.perf_counter() - self.start)
            time.sleep(0.01)

    def wait(self, count: int, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.times)} of {count} bottles reached the fake API")
            time.sleep(0.01)
        return self.times[count - 1]


class Bench:
    """The run's home: a project with the agent, a profile reaching the fake API and the upstream."""

    def __init__(self, api: FakeMessagesAPI, gateway: str, upstream_port: int, work: Path):
        self.work = work
        (work / "project/.bottle/agents").mkdir(parents=True)
        (work / f"project/.bottle/agents/{AGENT}.md").write_text(f"---\nname: {AGENT}\n---\nBenchmark.\n")
        profile = work / "config/bottle/bottles/default.toml"
        profile.parent.mkdir(parents=True)
        profile.write_text(fake_api_profile(api, gateway, work / "pki/ca.pem", allow=(f"{gateway}:{upstream_port}",)))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOTTLE_")}
        self.env.update(XDG_CONFIG_HOME=str(work / "config"), XDG_STATE_HOME=str(work / "state"),
                        ANTHROPIC_API_KEY=API_KEY)

    def start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "bottle", "run", AGENT, "--prompt", "hi"], cwd=self.work / "project",
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def remove_all(self) -> None:
        state = self.work / "state" / "bottle"
        slugs = [path.name for path in state.glob("*") if (path / "plan.json").is_file()] if state.is_dir() else []
        if slugs:
            subprocess.run([sys.executable, "-m", "bottle", "rm", "--force", *slugs], env=self.env,
                           stdout=subprocess.DEVNULL, check=True)


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, err = process.communicate(timeout=300)
        if process.returncode != 0:
            raise SystemExit(f"a bottle failed ({process.returncode}):\n{err}")


def start_case(bench: Bench, api: FakeMessagesAPI, count: int) -> dict:
    """*count* bottles at once, every reply at once: seconds until all were ready and until all exited."""
    api.enqueue(*[text("done") for _ in range(count)])
    before = len(api.message_requests(main_only=True))
    arrivals = Arrivals(api)
    arrivals.times = [0.0] * before
    processes = [bench.start() for _ in range(count)]
    ready = arrivals.wait(before + count)
    finish(processes)
    finished = time.perf_counter() - arrivals.start
    arrivals.done.set()
    bench.remove_all()
    return {"ready_s": round(ready, 2), "finished_s": round(finished, 2)}


def post(agent, env: dict) -> float:
    """One POST from *agent* through its sidecar; its seconds."""
    result = agent.exec_run(["timeout", "600", "node", "-e", CLIENT_JS], environment=env, demux=True)
    if result.exit_code != 0:
        raise SystemExit(f"the POST failed in {agent.name}: {(result.output[1] or b'').decode(errors='replace')}")
    return json.loads(result.output[0])["post_ms"][0] / 1000


def held_case(bench: Bench, api: FakeMessagesAPI, client, count: int, post_env: dict, post_mb: float) -> dict:
    """*count* bottles held mid-session: each sidecar's memory, one POST alone, then one from each at once."""
    release = threading.Event()
    api.enqueue(*[held(release) for _ in range(count)])
    before = len(api.message_requests(main_only=True))
    processes = [bench.start() for _ in range(count)]
    try:
        arrivals = Arrivals(api)
        arrivals.times = [0.0] * before
        arrivals.wait(before + count)
        arrivals.done.set()
        containers = client.containers.list(filters={"label": f"bottle.agent={AGENT}"})
        sidecars = [c for c in containers if c.labels.get("bottle.role") == "sidecar"]
        agents = [c for c in containers if c.labels.get("bottle.role") != "sidecar"]
        time.sleep(2)
        idle = [memory(sidecar)["docker_stats_mib"] for sidecar in sidecars]
        alone = post(agents[0], post_env)
        with ThreadPoolExecutor(max_workers=len(agents)) as pool:
            started = time.perf_counter()
            each = list(pool.map(lambda agent: post(agent, post_env), agents))
            together = time.perf_counter() - started
        after = [memory(sidecar)["docker_stats_mib"] for sidecar in sidecars]
    finally:
        release.set()
        finish(processes)
        bench.remove_all()
    return {
        "sidecar_memory_idle_mib": {"each": idle, "max": max(idle), "sum": round(sum(idle), 1)},
        "sidecar_memory_after_post_mib": {"each": after, "max": max(after)},
        "post_alone_mb_s": round(post_mb / alone, 1),
        "posts_all_at_once_s": round(together, 2),
        "post_each_mb_s_median": round(post_mb / statistics.median(each), 1),
        "posts_total_mb_s": round(post_mb * len(each) / together, 1),
        "posts_all_over_one_alone": round(together / alone, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bottles", type=int, default=10)
    parser.add_argument("--post-mb", type=float, default=8.0)
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    gateway = host_gateway(client)
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-density-"))
    _, cert, key, upstream = start_upstream(work, gateway)
    chunk = _numbered("".join(_source_texts()[:8]))[:48_000]
    post_env = {"B_HOST": gateway, "B_PORT": str(upstream.server_address[1]), "B_CHUNK": chunk,
                "B_POST_BYTES": str(int(args.post_mb * MiB)), "B_VIA_PROXY": "1", "B_WARMUP": "0",
                "B_REQUESTS": "0", "B_POSTS": "1", "B_CA_FILE": "/usr/local/share/ca-certificates/bottle-ca.crt"}
    try:
        with FakeMessagesAPI(api_key=API_KEY, host="0.0.0.0", tls=(str(cert), str(key))) as api:
            bench = Bench(api, gateway, upstream.server_address[1], work)
            start_case(bench, api, 1)  # warm: the page cache, the image's layers
            one = start_case(bench, api, 1)
            many = start_case(bench, api, args.bottles)
            loaded = held_case(bench, api, client, args.bottles, post_env, args.post_mb * MiB / 1e6)
    finally:
        upstream.shutdown()
        upstream.server_close()
    print(json.dumps({
        "bottles": args.bottles,
        "start": {"one_alone": one, "all_at_once": many,
                  "finished_over_one_alone": round(many["finished_s"] / one["finished_s"], 2),
                  "ready_over_one_alone": round(many["ready_s"] / one["ready_s"], 2)},
        "held": loaded,
    }, indent=2))


if __name__ == "__main__":
    main()
