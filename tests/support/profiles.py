"""Bottle profiles that point Claude Code at a fake Messages API on this machine.

The agent reaches the API only through its sidecar: the API's host:port is
the one egress rule, the sidecar trusts the API's test CA upstream, and the
sidecar injects the key from the host's ``ANTHROPIC_API_KEY`` (the agent
holds a placeholder). Used by the tests, the benchmarks and the offline demo.
"""

import json
from pathlib import Path

from tests.support.fake_anthropic import FakeMessagesAPI

KEY_ENV = "ANTHROPIC_API_KEY"


def fake_api_profile(
    api: FakeMessagesAPI, gateway: str, upstream_ca_file: Path, *, extra: str = "", allow: tuple[str, ...] = ()
) -> str:
    """*extra* goes at the profile's top level; *allow* adds egress rules."""
    rules = ", ".join(json.dumps(rule) for rule in (f"{gateway}:{api.port}", *allow))
    return (
        f"{extra}\n"
        f'[env]\nANTHROPIC_BASE_URL = "{api.url_for(gateway)}"\nCLAUDE_CODE_MAX_RETRIES = "0"\n\n'
        f'[egress]\nallow = [{rules}]\ntrust = ["{upstream_ca_file}"]\n\n'
        f'[[credentials]]\nhost = "{gateway}"\nheader = "x-api-key"\nenv = "{KEY_ENV}"\n'
    )
