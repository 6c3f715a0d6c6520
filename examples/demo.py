"""Run the example agent: for real with your ANTHROPIC_API_KEY, or offline.

With ANTHROPIC_API_KEY set, the example profile is installed into your config
dir (never overwriting one you have) and the agent runs against the real API,
the key injected by the sidecar. Without it, everything runs in a throwaway
config dir against the fake Messages API the tests use, served over TLS on
this machine: the same bottle, sidecar, proxy and audit log, no account needed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROMPT = "In one sentence: what can you reach from inside this bottle?"


def bottle(*args: str, env: dict | None = None) -> int:
    return subprocess.call([sys.executable, "-m", "bottle", *args], cwd=HERE, env=env)


def real() -> int:
    from bottle import paths

    profile = paths.config_dir() / "bottles" / "example.toml"
    if not profile.exists():
        profile.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "bottles" / "example.toml", profile)
        print(f"installed the example profile at {profile}")
    return bottle("run", "hello", "--prompt", PROMPT)


def offline() -> int:
    import docker

    from tests.support.certs import TestCA
    from tests.support.fake_anthropic import FakeMessagesAPI, text
    from tests.support.hostnet import host_gateway
    from tests.support.profiles import fake_api_profile

    print("ANTHROPIC_API_KEY is not set: running offline against the fake Messages API the tests use.")
    work = Path(tempfile.mkdtemp(prefix="bottle-demo-"))
    gateway = host_gateway(docker.from_env())
    ca = TestCA.create("bottle demo upstream CA")
    (work / "ca.pem").write_bytes(ca.cert_pem)
    cert, key = ca.issue(work, [gateway])
    demo_key = "sk-ant-api03-demo-key-held-by-the-sidecar-only"
    reply = text("From inside this bottle I can reach only what the sidecar allows: this API, nothing else.")
    with FakeMessagesAPI([reply], api_key=demo_key, host="0.0.0.0", tls=(str(cert), str(key))) as api:
        profile = work / "config/bottle/bottles/example.toml"
        profile.parent.mkdir(parents=True)
        profile.write_text(fake_api_profile(api, gateway, work / "ca.pem"))
        env = dict(os.environ, XDG_CONFIG_HOME=str(work / "config"), XDG_STATE_HOME=str(work / "state"),
                   ANTHROPIC_API_KEY=demo_key)
        code = bottle("run", "hello", "--prompt", PROMPT, env=env)
        (slug,) = [p.name for p in (work / "state/bottle").iterdir()]
        print(f"\nthe bottle's audit log (bottle audit {slug}):")
        bottle("audit", slug, env=env)
        seen = api.message_requests(main_only=True)
        print(f"\nthe fake API saw {len(seen)} request(s); the key it received was the real one: "
              f"{bool(seen) and seen[0].headers.get('x-api-key') == demo_key}")
    shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # tests.support, for the offline demo
    sys.exit(real() if os.environ.get("ANTHROPIC_API_KEY") else offline())
