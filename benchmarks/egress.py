"""What the egress sidecar costs: latency, scanning speed, memory. One run, one bottle per sidecar image.

Prints, measured in the same run:
- the latency of a small HTTPS request over a kept-alive connection, from the
  agent container of a running bottle through its sidecar, against the same
  request from a container of the agent image on Docker's default bridge
  network straight to the same upstream (p50, p99 and the p50 added);
- the secret scanner's speed (MB/s) on Messages-API-like request bodies
  (system prompt, tools, code in tool results, a screenshot), in a container of
  the sidecar image (its Python, not the host's), as the proxy calls it; and
  large POSTs end to end, through the sidecar and direct;
- a 200 MB download with curl, through the sidecar and direct (MB/s), and what
  it costs the egress proxy's memory: its RSS and PSS before, at the peak (RSS:
  the kernel's high-water mark, reset just before; PSS: sampled meanwhile) and
  after, the rise in MiB and as a fraction of the body;
- the sidecar's memory at idle (after start and a few requests): the
  container's as ``docker stats`` reports it (and the cgroup's anonymous
  memory), and the RSS and PSS of each process in it; again after the load.

Targets: at most 2 ms added at p50, at least 50 MB/s scanned, at most 80 MB
sidecar memory at idle (by docker stats and by the processes' summed PSS,
which counts the shared libraries' pages as well), at most 8 MiB more of the
egress proxy's memory at the download's peak, whatever its size (it streams
through). After the large POSTs the proxy keeps more resident (the allocator's
high-water mark, not live objects): reported, not a target.

The upstream is an HTTPS server on this machine's Docker bridge address, with
a test CA the bottle's profile trusts (``[egress] trust``); a held fake
Messages API keeps the bottle's Claude Code running meanwhile. The client is a
small Node script (Node is in the agent image): raw HTTP/1.1 over one TLS
connection, through a CONNECT tunnel for the bottle, timed per request.
Everything the run starts is torn down at the end.

Run: .venv/bin/python -m benchmarks.egress [--requests N] [--post-mb M] [--download-mb D]
     [--sidecar-image TAG ...]  (several: each measured in turn in this run, then a table side by side)
"""

import argparse
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker

from bottle.settings import Settings
from tests.support.certs import TestCA
from tests.support.fake_anthropic import FakeMessagesAPI, held
from tests.support.hostnet import host_gateway

LABEL = "bottle.slug"
KEY_ENV = "ANTHROPIC_API_KEY"
REAL_KEY = "sk-ant-api03-" + "BenchmarkKeyOnlyTheSidecarHolds" * 2 + "-AA"
PLACEHOLDER = "sk-ant-api03-bottle-placeholder-" + "0" * 24
AGENT = "egressbench"
MiB = 1024 * 1024

# The client, run with `node -e` in a container of the agent image. It speaks
# HTTP/1.1 itself so that nothing but the network and the proxy is timed; B_VIA_PROXY=1
# tunnels through $HTTPS_PROXY with CONNECT, as the agent's tools do.
CLIENT_JS = r"""
const net = require('net'), tls = require('tls'), fs = require('fs');
const E = process.env, host = E.B_HOST, port = Number(E.B_PORT);
const ca = E.B_CA_PEM || fs.readFileSync(E.B_CA_FILE, 'utf8');
const head = (s) => new Promise((resolve, reject) => {
  let buf = '';
  const onData = (d) => {
    buf += d.toString('latin1');
    if (buf.includes('\r\n\r\n')) { s.removeListener('data', onData); resolve(buf); }
  };
  s.on('data', onData); s.once('error', reject);
});
async function open() {
  let raw;
  if (E.B_VIA_PROXY === '1') {
    const proxy = new URL(E.HTTPS_PROXY);
    raw = net.connect(Number(proxy.port), proxy.hostname);
    raw.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
    const answer = await head(raw);
    if (!/^HTTP\/1\.[01] 200/.test(answer)) throw new Error('CONNECT refused: ' + answer);
  } else {
    raw = net.connect(port, host);
    await new Promise((resolve, reject) => { raw.once('connect', resolve); raw.once('error', reject); });
  }
  raw.setNoDelay(true);
  const sock = tls.connect({socket: raw, host, ca});
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  let buf = Buffer.alloc(0), pending = null;
  const fail = (err) => { if (pending) { const p = pending; pending = null; p.reject(err); } };
  sock.on('error', fail);
  sock.on('close', () => fail(new Error('connection closed')));
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    const end = buf.indexOf('\r\n\r\n');
    if (!pending || end < 0) return;
    const text = buf.subarray(0, end).toString('latin1');
    const match = /\r\ncontent-length:\s*(\d+)/i.exec(text), length = match ? Number(match[1]) : 0;
    if (buf.length < end + 4 + length) return;
    const status = Number(text.split(' ')[1]), body = buf.subarray(end + 4, end + 4 + length).toString();
    buf = buf.subarray(end + 4 + length);
    const p = pending; pending = null;
    status === 200 ? p.resolve() : p.reject(new Error(`HTTP ${status}: ${body}`));
  });
  return (method, path, body) => new Promise((resolve, reject) => {
    pending = {resolve, reject};
    let lines = `${method} ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n`;
    if (body) lines += `content-type: application/json\r\ncontent-length: ${body.length}\r\n`;
    sock.write(lines + '\r\n');
    if (body) sock.write(body);
  });
}
(async () => {
  const send = await open(), ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
  for (let i = 0; i < Number(E.B_WARMUP); i++) await send('GET', '/ping');
  const latency = [], posts = [];
  for (let i = 0; i < Number(E.B_REQUESTS); i++) {
    const t0 = process.hrtime.bigint();
    await send('GET', '/ping');
    latency.push(ms(t0));
  }
  if (Number(E.B_POSTS) > 0) {
    const chunk = JSON.stringify({role: 'user', content: E.B_CHUNK});
    const count = Math.max(1, Math.round(Number(E.B_POST_BYTES) / chunk.length));
    const body = Buffer.from(`{"model":"bench","max_tokens":1,"messages":[${Array(count).fill(chunk).join(',')}]}`);
    for (let i = 0; i < Number(E.B_POSTS); i++) {
      const t0 = process.hrtime.bigint();
      await send('POST', '/v1/upload', body);
      posts.push(ms(t0));
    }
    console.log(JSON.stringify({latency_ms: latency, post_ms: posts, post_bytes: body.length}));
  } else {
    console.log(JSON.stringify({latency_ms: latency, post_ms: [], post_bytes: 0}));
  }
  process.exit(0);
})().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1); });
"""

# Read by a Python started in the sidecar: every other process's RSS and PSS.
PROCESSES_PY = r"""
import json, os, re
rows = []
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        rollup = open(f"/proc/{pid}/smaps_rollup").read()
    except OSError:
        continue
    kb = {name: int(value) for name, value in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    rows.append({"pid": int(pid), "argv": " ".join(a.decode() for a in argv if a),
                 "rss_kb": kb.get("Rss", 0), "pss_kb": kb.get("Pss", 0)})
print(json.dumps(rows))
"""


# Read by a Python started in the sidecar: the egress proxy's RSS, PSS and peak RSS (VmHWM) in kB;
# with "reset", the peak starts again from the current RSS (clear_refs 5).
EGRESS_MEMORY_PY = r"""
import json, os, re, sys
def argv(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:  # a process that just ended
        return []
pid = next(p for p in os.listdir("/proc") if p.isdigit() and argv(p)[1:3] == [b"-m", b"bottle_egress_sidecar.main"])
if sys.argv[1:] == ["reset"]:
    open(f"/proc/{pid}/clear_refs", "w").write("5")
kb = dict(re.findall(r"^(\w+):\s+(\d+) kB", open(f"/proc/{pid}/smaps_rollup").read(), re.M))
hwm = re.search(r"^VmHWM:\s+(\d+) kB", open(f"/proc/{pid}/status").read(), re.M).group(1)
print(json.dumps({"rss_kb": int(kb["Rss"]), "pss_kb": int(kb["Pss"]), "hwm_kb": int(hwm)}))
"""

# curl's summary of one download, as JSON.
CURL_SUMMARY = '{"bytes": %{size_download}, "seconds": %{time_total}}'


class Upstream(BaseHTTPRequestHandler):
    """Answers GET with a few bytes, GET /download/N with N bytes (content-length, 1 MiB writes),
    and POST with the size it read, in one write each."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if self.path.startswith("/download/"):
            size = int(self.path.removeprefix("/download/"))
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                             b"content-length: %d\r\n\r\n" % size)
            block = b"\0" * MiB
            for offset in range(0, size, MiB):
                self.wfile.write(block[: size - offset])
            return
        length = int(self.headers.get("content-length") or 0)
        received = len(self.rfile.read(length)) if length else 0
        body = b'{"ok":true,"received":%d}' % received
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(body), body))

    do_GET = do_POST = _answer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY

    def log_message(self, *args) -> None:
        pass


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


# -- request bodies like Claude Code's -----------------------------------------------------------------------------


def start_upstream(work: Path, gateway: str):
    """A test CA (its certificate in WORK/pki/ca.pem), and the HTTPS upstream on every address of this machine
    with a certificate for *gateway*, serving in a thread: (ca, cert, key, server)."""
    ca = TestCA.create("bottle benchmark upstream CA")
    cert, key = ca.issue(work / "pki", [gateway])
    (work / "pki/ca.pem").write_bytes(ca.cert_pem)
    upstream = UpstreamServer(("0.0.0.0", 0), Upstream)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream.socket = context.wrap_socket(upstream.socket, server_side=True)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    return ca, cert, key, upstream


def _source_texts() -> list[str]:
    """Real code for tool results: this Python's standard library, top-level modules, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [path.read_text(errors="replace") for path in sorted(stdlib.glob("*.py")) if path.stat().st_size > 4000]


def _numbered(text: str) -> str:
    """A file as Claude Code's Read tool returns it: line numbers, a tab, the line."""
    return "\n".join(f"{number:6}\t{line}" for number, line in enumerate(text.splitlines(), 1))


TOOLS = [
    {"name": name, "description": f"{name}: " + "Use this tool to work on the user's files. " * 12,
     "input_schema": {"type": "object", "properties": {"file_path": {"type": "string", "description": "absolute path"},
                                                       "command": {"type": "string"}, "limit": {"type": "number"}},
                      "required": ["file_path"]}}
    for name in ("Bash", "Read", "Edit", "Write", "Glob", "Grep", "WebFetch", "TodoWrite", "Task", "NotebookEdit")
]


def messages_body(size: int, seed: int) -> bytes:
    """A Messages API request of about *size* bytes: system prompt, tools, a conversation that
    reads source files, and one screenshot (random bytes in base64, as a PNG's are)."""
    rng = random.Random(seed)
    sources = _source_texts()
    system = ("You are Claude Code, Anthropic's official CLI for Claude. Follow the user's instructions. " * 60)
    messages: list[dict] = [{"role": "user", "content": [{"type": "text", "text": "Look at the failing build."}]}]
    if size >= 512 * 1024:
        picture = __import__("base64").b64encode(rng.randbytes(min(size // 8, 400_000))).decode()
        messages[0]["content"].append({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": picture}})
    total, turn = len(system) + len(json.dumps(TOOLS)) + len(json.dumps(messages)), 0
    while total < size:
        source = sources[rng.randrange(len(sources))]
        call = f"toolu_01{rng.getrandbits(64):016x}"
        turn += 1
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Let me read file number {turn}."},
            {"type": "tool_use", "id": call, "name": "Read", "input": {"file_path": f"/workspace/src/m{turn}.py"}}]})
        result = _numbered(source)[: size - total + 200]
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call, "content": result}]})
        total += len(result) + 400
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True, "system": system, "tools": TOOLS,
            "messages": messages}
    return json.dumps(body).encode()


REQUEST_HEADERS = [
    (b"host", b"api.anthropic.com"), (b"content-type", b"application/json"), (b"anthropic-version", b"2023-06-01"),
    (b"x-api-key", PLACEHOLDER.encode()), (b"user-agent", b"claude-cli/2.0.0 (external, cli)"),
    (b"anthropic-beta", b"claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming"),
    (b"x-stainless-lang", b"js"), (b"accept", b"application/json"),
]


# Run in a container of the sidecar image, on its Python, over the bodies in /bench (one file each, with the
# URL and headers in /bench/request.json): the median MB/s of Scanner.scan_request by body, as the proxy calls it.
SCAN_SPEED_PY = r"""
import json, statistics, sys, time
from pathlib import Path
from bottle_sidecar.secrets_scan import Scanner
request = json.loads(Path("/bench/request.json").read_text())
url, headers = request["url"].encode(), [(k.encode(), v.encode()) for k, v in request["headers"]]
scanner, result = Scanner([], [request["placeholder"]]), {}
for path in sorted(Path("/bench").glob("body-*"), key=lambda p: p.stat().st_size):
    body = path.read_bytes()
    hit = scanner.scan_request(url, headers, body)
    if hit is not None:
        sys.exit(f"the benchmark body of {len(body)} bytes has a false positive: {hit}")
    times = []
    for _ in range(int(sys.argv[1])):
        started = time.perf_counter()
        scanner.scan_request(url, headers, body)
        times.append(time.perf_counter() - started)
    result[len(body)] = statistics.median(times)
print(json.dumps(result))
"""


def scan_speed(client, sidecar_image: str, repeats: int) -> dict:
    """MB/s of Scanner.scan_request over bodies of several sizes, as the proxy calls it, on the
    sidecar image's Python (which is not the host's)."""
    with tempfile.TemporaryDirectory(prefix="bottle-bench-scan-") as bench:
        os.chmod(bench, 0o755)  # for the image's own user
        for size in (64 * 1024, 256 * 1024, MiB, 4 * MiB):
            Path(bench, f"body-{size}").write_bytes(messages_body(size, seed=size))
        Path(bench, "request.json").write_text(json.dumps({
            "url": "https://api.anthropic.com/v1/messages?beta=true", "placeholder": PLACEHOLDER,
            "headers": [(k.decode(), v.decode()) for k, v in REQUEST_HEADERS]}))
        try:
            output = client.containers.run(sidecar_image, entrypoint=["python", "-c", SCAN_SPEED_PY, str(repeats)],
                                           volumes={bench: {"bind": "/bench", "mode": "ro"}}, network_disabled=True,
                                           remove=True)
        except docker.errors.ContainerError as err:
            raise SystemExit(f"the scanner benchmark failed in {sidecar_image}: {err.stderr.decode(errors='replace')}")
    seconds = {int(size): value for size, value in json.loads(output).items()}
    return {
        "all_bodies_mb_s": round(sum(seconds) / sum(seconds.values()) / 1e6, 1),
        "by_body_size_mb_s": {f"{size // 1024}KiB": round(size / value / 1e6, 1) for size, value in seconds.items()},
    }


# -- the containers ---------------------------------------------------------------------------------------------


def run_client(container, env: dict, timeout: int = 600, command: tuple[str, ...] = ("node", "-e", CLIENT_JS)) -> dict:
    """The Node client (or *command*) in a running container (exec); its JSON result."""
    result = container.exec_run(["timeout", str(timeout), *command], environment=env, demux=True)
    stdout, stderr = (part.decode(errors="replace") if part else "" for part in result.output)
    if result.exit_code != 0:
        raise SystemExit(f"the client failed in {container.name} ({result.exit_code}): {stderr or stdout}")
    return json.loads(stdout)


def run_client_direct(client, image: str, env: dict, command: tuple[str, ...] = ("node", "-e", CLIENT_JS)) -> dict:
    """The Node client (or *command*) in a fresh container of *image* on the default bridge network."""
    container = client.containers.run(image, list(command), environment=env, network="bridge",
                                      detach=True, labels={"bottle.benchmark": "egress"})
    try:
        status = container.wait(timeout=600)
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        if status["StatusCode"] != 0:
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
            raise SystemExit(f"the direct client failed ({status['StatusCode']}): {stderr or stdout}")
        return json.loads(stdout)
    finally:
        container.remove(force=True)


def memory(container) -> dict:
    """The container's memory as docker stats counts it, and each process's RSS and PSS, in MiB."""
    stats = container.stats(stream=False)["memory_stats"]
    usage, detail = stats["usage"], stats.get("stats", {})
    # docker stats (20.10): usage less inactive page cache (cgroup v1: total_inactive_file; v2: inactive_file).
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    anon = detail.get("total_rss", detail.get("anon", 0))
    result = container.exec_run(["python", "-c", PROCESSES_PY], demux=True)
    rows = json.loads(result.output[0])
    processes = {}
    for row in sorted(rows, key=lambda r: r["pid"]):
        argv = row["argv"].split() or [str(row["pid"])]
        name = argv[0].rsplit("/", 1)[-1]
        if name.startswith("python") and "-m" in argv[:-1]:  # python -m bottle_sidecar.init: "init"
            package, _, module = argv[argv.index("-m") + 1].rpartition(".")
            # python -m bottle_egress_sidecar.main: "egress"
            name = package.removeprefix("bottle_").removesuffix("_sidecar") if module == "main" else module
        processes[name] = {"rss_mib": round(row["rss_kb"] / 1024, 1), "pss_mib": round(row["pss_kb"] / 1024, 1)}
    return {
        "docker_stats_mib": round((usage - inactive if inactive < usage else usage) / MiB, 1),
        "cgroup_usage_mib": round(usage / MiB, 1),
        "cgroup_anon_mib": round(anon / MiB, 1),
        "processes_rss_mib": round(sum(r["rss_kb"] for r in rows) / 1024, 1),
        "processes_pss_mib": round(sum(r["pss_kb"] for r in rows) / 1024, 1),
        "by_process": processes,
    }


def egress_memory(sidecar, *args: str) -> dict:
    """The egress proxy's RSS, PSS and peak RSS, in kB (see EGRESS_MEMORY_PY)."""
    result = sidecar.exec_run(["python", "-c", EGRESS_MEMORY_PY, *args], demux=True)
    if result.exit_code != 0:
        raise SystemExit(f"cannot read the egress proxy's memory: {result.output[1].decode(errors='replace')}")
    return json.loads(result.output[0])


def download_memory(sidecar, download) -> dict:
    """The egress proxy's memory around *download()* (which returns curl's summary): before, at the
    peak (RSS: its high-water mark, reset first; PSS: the largest of samples taken meanwhile) and after."""
    before = egress_memory(sidecar, "reset")
    samples, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(egress_memory(sidecar))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        summary = download()
    finally:
        done.set()
        sampler.join()
    peak = egress_memory(sidecar)
    time.sleep(2)
    after = egress_memory(sidecar)
    rise = peak["hwm_kb"] - before["rss_kb"]
    return {
        "summary": summary,
        "egress_rss_mib": {"before": _mib(before["rss_kb"]), "peak": _mib(peak["hwm_kb"]),
                           "after": _mib(after["rss_kb"])},
        "egress_pss_mib": {"before": _mib(before["pss_kb"]), "peak_sampled": _mib(max(s["pss_kb"] for s in samples)),
                           "after": _mib(after["pss_kb"]), "samples": len(samples)},
        "rise_peak_rss_mib": _mib(rise),
        "rise_of_body": round(rise * 1024 / summary["bytes"], 4),
    }


def _mib(kb: int) -> float:
    return round(kb / 1024, 1)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3), "n": len(ordered)}


def leftovers(client) -> list[str]:
    """This run's bottle (its agent's label) and direct clients, removed if still there; their names.
    Other bottles on the engine are left alone."""
    found = client.containers.list(all=True, filters={"label": f"bottle.agent={AGENT}"})
    found += client.containers.list(all=True, filters={"label": "bottle.benchmark=egress"})
    slugs = {c.labels.get(LABEL) for c in found} - {None}
    for container in found:
        container.remove(force=True)
    networks = [n for n in client.networks.list(filters={"label": LABEL}) if n.name in {f"bottle-{s}" for s in slugs}]
    for network in networks:
        network.remove()
    return [c.name for c in found] + [n.name for n in networks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per side (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="the requests are split into this many "
                        "alternating runs per side")
    parser.add_argument("--post-mb", type=float, default=8.0, help="size of each large POST")
    parser.add_argument("--posts", type=int, default=4)
    parser.add_argument("--download-mb", type=int, default=200, help="size of the download (MB, 10^6 bytes)")
    parser.add_argument("--scan-repeats", type=int, default=9)
    parser.add_argument("--image", default="bottle/agent:latest")
    parser.add_argument("--sidecar-image", action="append", dest="sidecar_images", metavar="TAG",
                        help="a sidecar image to measure (repeatable: each is measured in turn, in this run, against "
                             "the same upstream; default: the sidecar_image setting)")
    args = parser.parse_args()

    images = args.sidecar_images or [Settings().sidecar_image]
    results = {image: measure(args, image) for image in images}
    print(json.dumps(results if len(images) > 1 else results[images[0]], indent=2))
    if len(images) > 1:
        print(compare(results))


def compare(results: dict[str, dict]) -> str:
    """The numbers that matter, one column per sidecar image."""
    rows = {
        "added p50 (ms)": lambda r: r["latency"]["added_p50_ms"],
        "added p99 (ms)": lambda r: r["latency"]["added_p99_ms"],
        "download through the sidecar (MB/s)": lambda r: r["download"]["through_sidecar_mb_s"],
        "large POST through the sidecar (MB/s)": lambda r: r["large_post_end_to_end"]["through_sidecar_mb_s"],
        "secret scanning in the sidecar image (MB/s)": lambda r: r["scanner_in_sidecar_image"]["all_bodies_mb_s"],
        "sidecar idle, docker stats (MiB)": lambda r: r["sidecar_memory_idle"]["docker_stats_mib"],
        "sidecar idle, PSS of its processes (MiB)": lambda r: r["sidecar_memory_idle"]["processes_pss_mib"],
        "egress proxy RSS rise at the download's peak (MiB)": lambda r: r["download"]["rise_peak_rss_mib"],
        "sidecar after load, docker stats (MiB)": lambda r: r["sidecar_memory_after_load"]["docker_stats_mib"],
    }
    width = max(map(len, rows)) + 2
    lines = [" " * width + "".join(f"{image:>32}" for image in results)]
    lines += [f"{name:<{width}}" + "".join(f"{value(result):>32}" for result in results.values())
              for name, value in rows.items()]
    return "\n".join(lines)


def measure(args: argparse.Namespace, sidecar_image: str) -> dict:
    """One bottle whose sidecar is *sidecar_image*: scanning, latency, download, large POSTs, memory."""
    client = docker.from_env(timeout=300)
    scanning = scan_speed(client, sidecar_image, args.scan_repeats)
    if leftovers(client):
        raise SystemExit(f"a bottle of the benchmark agent {AGENT} was still there (removed); run again")
    gateway = host_gateway(client)
    work = Path(tempfile.mkdtemp(prefix="bottle-bench-egress-"))
    ca, cert, key, upstream = start_upstream(work, gateway)
    port = upstream.server_address[1]

    chunk = _numbered("".join(_source_texts()[:8]))[:48_000]
    common = {"B_HOST": gateway, "B_PORT": str(port), "B_CHUNK": chunk,
              "B_POST_BYTES": str(int(args.post_mb * MiB))}
    direct_env = {**common, "B_CA_PEM": ca.cert_pem.decode()}
    bottled_env = {**common, "B_VIA_PROXY": "1", "B_CA_FILE": "/usr/local/share/ca-certificates/bottle-ca.crt"}

    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTTLE_")}
    env.update(XDG_CONFIG_HOME=str(work / "config"), XDG_STATE_HOME=str(work / "state"), **{KEY_ENV: REAL_KEY},
               BOTTLE_SIDECAR_IMAGE=sidecar_image, BOTTLE_IMAGE=args.image)
    release = threading.Event()
    process = None
    result: dict = {"scanner_in_sidecar_image": scanning}
    try:
        with FakeMessagesAPI([held(release)], api_key=REAL_KEY, host="0.0.0.0", tls=(str(cert), str(key))) as api:
            project = work / "project"
            (project / ".bottle/agents").mkdir(parents=True)
            (project / f".bottle/agents/{AGENT}.md").write_text(f"---\nname: {AGENT}\n---\nHold still.\n")
            profile = work / "config/bottle/bottles/default.toml"
            profile.parent.mkdir(parents=True)
            profile.write_text(
                f'[env]\nANTHROPIC_BASE_URL = "{api.url_for(gateway)}"\nCLAUDE_CODE_MAX_RETRIES = "0"\n'
                f'DISABLE_TELEMETRY = "1"\nDISABLE_AUTOUPDATER = "1"\nCLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"\n'
                f'[egress]\nallow = ["{gateway}:{api.port}", "{gateway}:{port}"]\ntrust = ["{work}/pki/ca.pem"]\n'
                f'[[credentials]]\nhost = "{gateway}"\nport = {api.port}\nheader = "x-api-key"\nenv = "{KEY_ENV}"\n'
            )
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "bottle", "run", AGENT, "--prompt", "hi"], cwd=project,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                api.wait_for(lambda r: r.main, 180)
            except TimeoutError:
                process.kill()
                out, err = process.communicate()
                raise SystemExit(f"the bottle did not reach the fake API:\n{out}\n{err}") from None
            result["bottle_up_s"] = round(time.perf_counter() - started, 2)
            containers = client.containers.list(filters={"label": f"bottle.agent={AGENT}"})
            agent = next(c for c in containers if c.labels.get("bottle.role") != "sidecar")
            sidecar = next(c for c in containers if c.labels.get("bottle.role") == "sidecar")

            run_client(agent, {**bottled_env, "B_WARMUP": "5", "B_REQUESTS": "0", "B_POSTS": "0"})
            time.sleep(2)
            result["sidecar_memory_idle"] = memory(sidecar)

            bottled, direct = [], []
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                run = {"B_WARMUP": "50", "B_REQUESTS": str(per_round), "B_POSTS": "0"}
                direct += run_client_direct(client, args.image, {**direct_env, **run})["latency_ms"]
                bottled += run_client(agent, {**bottled_env, **run})["latency_ms"]
            through, straight = percentiles(bottled), percentiles(direct)
            result["latency"] = {
                "through_sidecar": through,
                "direct_on_bridge": straight,
                "added_p50_ms": round(through["p50_ms"] - straight["p50_ms"], 3),
                "added_p99_ms": round(through["p99_ms"] - straight["p99_ms"], 3),
            }

            # Before the large POSTs, whose bodies the proxy holds: their pages would make room for the download.
            url = f"https://{gateway}:{port}/download/{args.download_mb * 1000 * 1000}"
            curl = ("curl", "-sS", "-o", "/dev/null", "-w", CURL_SUMMARY)
            direct_curl = ("sh", "-c", 'printf "%s" "$B_CA_PEM" > /tmp/ca.pem && exec "$@" --cacert /tmp/ca.pem', "-",
                           *curl, url)
            straight = run_client_direct(client, args.image, direct_env, command=direct_curl)
            through = download_memory(sidecar, lambda: run_client(agent, {}, command=(*curl, url)))
            summary = through.pop("summary")
            mb = summary["bytes"] / 1e6
            result["download"] = {
                "body_mb": round(mb, 1),
                "through_sidecar_mb_s": round(mb / summary["seconds"], 1),
                "direct_on_bridge_mb_s": round(straight["bytes"] / 1e6 / straight["seconds"], 1),
                **through,
            }
            posts = {"B_WARMUP": "2", "B_REQUESTS": "0", "B_POSTS": str(args.posts)}
            d = run_client_direct(client, args.image, {**direct_env, **posts})
            b = run_client(agent, {**bottled_env, **posts})
            mb = b["post_bytes"] / 1e6
            result["large_post_end_to_end"] = {
                "body_mb": round(mb, 1),
                "through_sidecar_mb_s": round(mb / (statistics.median(b["post_ms"]) / 1000), 1),
                "direct_on_bridge_mb_s": round(mb / (statistics.median(d["post_ms"]) / 1000), 1),
                "added_ms_per_post": round(statistics.median(b["post_ms"]) - statistics.median(d["post_ms"]), 1),
            }
            time.sleep(2)
            result["sidecar_memory_after_load"] = memory(sidecar)
            release.set()
            process.communicate(timeout=120)
    finally:
        release.set()
        if process is not None and process.poll() is None:
            process.terminate()
            process.communicate(timeout=60)
        # A run ends by stopping its bottle: its disks and state stay until `bottle rm`.
        slugs = [path.parent.name for path in (work / "state" / "bottle").glob("*/inputs.json")]
        if slugs:
            subprocess.run([sys.executable, "-m", "bottle", "rm", "--force", *slugs], env=env,
                           stdout=subprocess.DEVNULL, check=False)
        upstream.shutdown()
        upstream.server_close()
        result["left_behind"] = leftovers(client)
    idle = result["sidecar_memory_idle"]
    result["targets"] = {
        "added_p50_ms_max": 2, "scan_mb_s_min": 50, "sidecar_idle_mb_max": 80, "download_rise_mib_max": 8,
        "met": {
            "latency": result["latency"]["added_p50_ms"] <= 2,
            "scanning": scanning["all_bodies_mb_s"] >= 50,
            "memory": max(idle["docker_stats_mib"], idle["processes_pss_mib"]) * MiB / 1e6 <= 80,
            "download_memory": result["download"]["rise_peak_rss_mib"] <= 8,
        },
    }
    return result


if __name__ == "__main__":
    main()
