"""Start-up cost of a bottle, measured against the raw engine in the same run.

Prints, for the same image and the same fake Messages API:
- raw ``docker run --rm IMAGE true`` (the engine's own floor);
- raw ``docker run --rm IMAGE claude -p ...`` (the same agent, no bottle);
- ``bottle run AGENT --prompt ...`` up to claude's exit;
- the engine API calls ``bottle run`` made, and how many were provisioning
  (between the sandbox's start and the agent's exec);
- ``bottle --help`` wall time.

Targets: bottle adds at most 1 s over raw claude; provisioning at most
3 engine round trips; ``bottle --help`` under 200 ms.

Beside the totals it prints the median of each step of ``bottle run``'s launch,
from the ``timings.json`` each run leaves in its state dir (``bottle run --timings``).

Run: .venv/bin/python -m benchmarks.startup [--runs N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from benchmarks.enginetap import EngineTap
from bottle_provisioners.claude import AGENT_BASE_ENV
from tests.support.certs import TestCA
from tests.support.fake_anthropic import FakeMessagesAPI
from tests.support.hostnet import host_gateway
from tests.support.profiles import fake_api_profile

API_KEY = "sk-ant-api03-benchmark"


def timed(argv, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def provisioning_calls(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Engine calls on the agent's container after it started and before the agent's exec.

    The agent's container is the one the last exec targets; the sidecar's own
    calls (started alongside) are not provisioning.
    """
    agent_exec = max(i for i, (m, p) in enumerate(requests) if m == "POST" and p.split("?")[0].endswith("/exec"))
    agent = requests[agent_exec][1].split("/containers/")[1].split("/")[0]
    start = next(i for i, (m, p) in enumerate(requests) if m == "POST" and f"/containers/{agent}/start" in p)
    return [(m, p) for m, p in requests[start + 1 : agent_exec] if f"/containers/{agent}/" in p]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="bottle/agent:latest")
    args = parser.parse_args()

    client = docker.from_env()
    gateway = host_gateway(client)
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-"))
    (work / "project/.bottle/agents").mkdir(parents=True)
    (work / "project/.bottle/agents/bench.md").write_text("---\nname: bench\n---\nYou are a benchmark.\n")
    ca = TestCA.create("bottle benchmark upstream CA")
    (work / "ca.pem").write_bytes(ca.cert_pem)
    cert, key = ca.issue(work, [gateway])
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "config"), XDG_STATE_HOME=str(work / "state"),
               ANTHROPIC_API_KEY=API_KEY)
    bottle = [sys.executable, "-m", "bottle"]

    with FakeMessagesAPI(api_key=API_KEY, host="0.0.0.0", tls=(str(cert), str(key))) as api:
        profile = work / "config/bottle/bottles/default.toml"
        profile.parent.mkdir(parents=True)
        profile.write_text(fake_api_profile(api, gateway, work / "ca.pem"))
        raw_env = {
            **AGENT_BASE_ENV, "ANTHROPIC_BASE_URL": api.url_for(gateway), "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CODE_MAX_RETRIES": "0", "NODE_EXTRA_CA_CERTS": "/tmp/upstream-ca.pem",
        }
        raw_flags = [flag for k, v in raw_env.items() for flag in ("-e", f"{k}={v}")]
        raw_flags += ["-v", f"{work / 'ca.pem'}:/tmp/upstream-ca.pem:ro"]

        raw_true, raw_claude, bottled = [], [], []
        for _ in range(args.runs):
            raw_true.append(timed(["docker", "run", "--rm", args.image, "true"]))
            raw_claude.append(timed(["docker", "run", "--rm", *raw_flags, args.image,
                                     "claude", "-p", "hi", "--dangerously-skip-permissions"]))
            bottled.append(timed([*bottle, "run", "bench", "--prompt", "hi"], cwd=work / "project", env=env))

        tap = EngineTap()
        try:
            timed([*bottle, "run", "bench", "--prompt", "hi"], cwd=work / "project",
                  env=dict(env, DOCKER_HOST=tap.docker_host))
            requests = tap.take()
        finally:
            tap.close()
    helps = [timed([str(Path(sys.executable).with_name("bottle")), "--help"]) for _ in range(args.runs)]

    provisioning = provisioning_calls(requests)
    median = statistics.median
    # Each run's timeline (timings.json in its state dir): the median of each step, in the order steps start.
    timelines = [json.loads(path.read_text()) for path in sorted((work / "state" / "bottle").glob("*/timings.json"))]
    steps: dict[str, list[float]] = {}
    for timeline in timelines:
        for step in timeline["steps"]:
            steps.setdefault(step["name"], []).append(step["duration_s"])
    # A run ends by stopping its bottle: its disks and state stay until `bottle rm`.
    slugs = [path.parent.name for path in (work / "state" / "bottle").glob("*/inputs.json")]
    subprocess.run([*bottle, "rm", "--force", *slugs], env=env, check=True, stdout=subprocess.DEVNULL)
    result = {
        "runs": args.runs,
        "raw_docker_run_true_s": round(median(raw_true), 3),
        "raw_docker_run_claude_s": round(median(raw_claude), 3),
        "bottle_run_s": round(median(bottled), 3),
        "bottle_overhead_over_raw_claude_s": round(median(bottled) - median(raw_claude), 3),
        "bottle_run_over_raw_claude_ratio": round(median(bottled) / median(raw_claude), 2),
        "engine_calls_total": len(requests),
        "engine_calls_provisioning": len(provisioning),
        "provisioning_calls": [f"{m} {p.split('?')[0]}" for m, p in provisioning],
        "bottle_help_s": round(median(helps), 3),
        "bottle_run_breakdown_median_s": {name: round(median(values), 3) for name, values in steps.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
