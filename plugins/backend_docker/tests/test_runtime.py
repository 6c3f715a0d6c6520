"""Which engine runtime a bottle's sandbox gets: the profile's (or the setting's) `runtime`, checked against
what this engine has registered, before anything starts."""

from types import SimpleNamespace

import pytest

from bottle.errors import EnvironmentProblem
from bottle_docker.backend import DockerBackend


def backend(*registered: str) -> DockerBackend:
    docker = DockerBackend()
    docker._client = SimpleNamespace(info=lambda: {"Runtimes": {name: {} for name in registered}})
    return docker


def plan(runtime):
    return SimpleNamespace(runtime=runtime, profile="work")


@pytest.mark.parametrize("runtime, registered, chosen", [
    (None, ("runc", "runsc"), None), ("runc", ("runc", "runsc"), None),
    ("runsc", ("runc", "runsc"), "runsc"), ("auto", ("runc", "runsc"), "runsc"), ("auto", ("runc",), None),
])
def test_the_runtime_is_the_profiles_where_the_engine_has_it(runtime, registered, chosen):
    assert backend(*registered).runtime(plan(runtime)) == chosen


def test_runsc_where_the_engine_lacks_it_says_how_to_get_it():
    with pytest.raises(EnvironmentProblem, match=r"Profile 'work': field `runtime`: runsc \(gVisor\) is not "
                                                 r"registered with this Docker engine \(it has runc\)\..*dev/setup"):
        backend("runc").runtime(plan("runsc"))


def test_a_runtime_that_is_none_of_these_is_refused_naming_the_field(home, plugin_profile, usage_error):
    path = home.profile("odd", 'runtime = "gvisor"\n')
    usage_error(lambda: plugin_profile("odd"), path, "field `runtime`")
