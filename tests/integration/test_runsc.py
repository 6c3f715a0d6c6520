"""gVisor: the docker backend's escape suite and end-to-end tests again, with the sandbox under runsc.

``dev/setup`` installs Debian's runsc and registers it with the engine, with
the runtime argument ``--network=host``: runsc's own network stack refuses to
start inside a container's namespace here, and with it runsc uses the
namespace Docker made, so the bottle's internal network confines it as it
confines runc. The tests are the docker suites' own functions, collected again
with this module's ``home``, whose bottles run under runsc (``BOTTLE_RUNTIME``).
"""

import pytest

from tests.integration.test_escape import bottles, test_escape_suite  # noqa: F401  (collected again, under runsc)
from tests.integration.test_run_e2e import (  # noqa: F401  (collected again, under runsc)
    test_agent_runs_tools_as_non_root_in_workdir,
    test_claude_exit_code_becomes_bottles,
    test_prompt_and_skills_reach_the_model,
    test_real_key_never_enters_the_agent_container,
)
from tests.support.collection import require

pytestmark = pytest.mark.integration


@pytest.fixture
def home(home, engine):
    require("runsc" in (engine.info().get("Runtimes") or {}), "runsc is not registered with the engine (dev/setup)")
    home.env["BOTTLE_RUNTIME"] = "runsc"
    return home


def test_the_sandbox_runs_under_gvisor_and_the_sidecar_does_not(home, api_profile, bottles):  # noqa: F811
    """The agent's container asks for runsc and its kernel is gVisor's; the sidecar, bottle's, stays on runc."""
    home.profile("default", api_profile())
    bottle = bottles("gvisor")
    bottle.agent.reload()
    bottle.sidecar.reload()
    assert bottle.agent.attrs["HostConfig"]["Runtime"] == "runsc"
    assert bottle.sidecar.attrs["HostConfig"]["Runtime"] == "runc"
    code, out = bottle.sh("dmesg | head -3")
    assert code == 0 and "gVisor" in out, out
