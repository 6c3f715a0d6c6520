"""Bottle profiles that point Claude Code at a fake Messages API on this machine.

The agent reaches the API only through its sidecar: the API's host:port is
the one egress rule, the sidecar trusts the API's test CA upstream, and the
sidecar injects the credential from the host's ``ANTHROPIC_API_KEY`` (or, on
request, ``CLAUDE_CODE_OAUTH_TOKEN``) exactly as the built-in default profile
does for the real API (the agent holds a placeholder). Used by the tests, the
benchmarks and the offline demo.
"""

import json
from pathlib import Path

from bottle_egress.tables import CredentialRoute
from bottle_provisioners import claude

BUILTIN_CREDENTIALS = tuple(CredentialRoute(**route) for route in claude.BUILTIN_CREDENTIALS)
from tests.support.fake_anthropic import FakeMessagesAPI

API_KEY_ROUTE, OAUTH_TOKEN_ROUTE = BUILTIN_CREDENTIALS
KEY_ENV = API_KEY_ROUTE.env


def fake_api_profile(
    api: FakeMessagesAPI, gateway: str, upstream_ca_file: Path, *, extra: str = "", allow: tuple[str, ...] = (),
    credential: CredentialRoute = API_KEY_ROUTE,
) -> str:
    """*extra* goes at the profile's top level; *allow* adds egress rules; *credential* is one of
    the built-in default's routes, sent to the fake API's host instead of the real one's."""
    rules = ", ".join(json.dumps(rule) for rule in (f"{gateway}:{api.port}", *allow))
    return (
        f"{extra}\n"
        f'[env]\nANTHROPIC_BASE_URL = "{api.url_for(gateway)}"\nCLAUDE_CODE_MAX_RETRIES = "0"\n\n'
        f'[egress]\nallow = [{rules}]\ntrust = ["{upstream_ca_file}"]\n\n'
        f'[[credentials]]\nhost = "{gateway}"\nport = {api.port}\nheader = "{credential.header}"\n'
        f'scheme = "{credential.scheme}"\nenv = "{credential.env}"\n'
    )
