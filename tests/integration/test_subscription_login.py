"""Subscription login: a Claude subscription token instead of an API key.

``claude setup-token`` makes a long-lived token; Claude Code finds it in
``CLAUDE_CODE_OAUTH_TOKEN`` and sends it as ``Authorization: Bearer``. Here
the host has only that token (no ``ANTHROPIC_API_KEY``), the profile routes it
exactly as the built-in default does for the real API, and the fake API takes
nothing but that bearer token: the session works, headless and interactive,
while the agent's container holds only a placeholder of the same shape.
"""

import threading

import pytest

from tests.integration.conftest import REAL_KEY_ENV
from tests.integration.test_interactive import REPLY, say_hello_interactively
from tests.integration.test_run_e2e import assert_guest_holds_only_the_placeholder
from tests.support.fake_anthropic import FakeMessagesAPI, held, text
from tests.support.profiles import OAUTH_TOKEN_ROUTE, fake_api_profile

pytestmark = pytest.mark.integration

REAL_OAUTH_TOKEN = "sk-ant-oat01-" + "R3alSubscriptionTokenOnlyTheSidecarHolds" * 2 + "-AA"
PLACEHOLDER_START = "sk-ant-oat01-bottle-placeholder-"


@pytest.fixture
def subscriber(home, upstream_ca, host_gateway):
    """The fake API that accepts only the bearer token, and a home that has only that token."""
    del home.env[REAL_KEY_ENV]
    home.env[OAUTH_TOKEN_ROUTE.env] = REAL_OAUTH_TOKEN
    with FakeMessagesAPI(oauth_token=REAL_OAUTH_TOKEN, host="0.0.0.0", tls=(upstream_ca.cert, upstream_ca.key)) as api:
        home.profile("default", fake_api_profile(api, host_gateway, upstream_ca.ca_file, credential=OAUTH_TOKEN_ROUTE))
        yield api


def test_headless_session_with_a_subscription_token(home, subscriber, engine):
    release = threading.Event()
    home.agent("subscriber", "Wait.")
    subscriber.enqueue(held(release, text("Hello, subscriber.")))
    process = home.popen("run", "subscriber", "--prompt", "hi")
    try:
        request = subscriber.wait_for(lambda r: r.main, timeout=120)
        assert request.headers["authorization"] == f"Bearer {REAL_OAUTH_TOKEN}"  # injected by the sidecar
        assert "x-api-key" not in request.headers
        assert_guest_holds_only_the_placeholder(engine, REAL_OAUTH_TOKEN, PLACEHOLDER_START)
    finally:
        release.set()
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Hello, subscriber." in out


def test_interactive_session_with_a_subscription_token(home, subscriber, tmp_path, engine):
    home.agent("talk", "Be brief.")
    subscriber.enqueue(text(REPLY))
    screen = say_hello_interactively(home, tmp_path, engine, "talk")
    assert "/login" not in screen and "API key" not in screen
    main = subscriber.message_requests(main_only=True)
    assert main and "Say hello" in subscriber.all_text(main[0])
    assert {r.headers.get("authorization") for r in main} == {f"Bearer {REAL_OAUTH_TOKEN}"}
