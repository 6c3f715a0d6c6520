"""What plugins register and plan must not clash: profile tables and how ``extends`` layers merge them
(``bottle.manifests.tables``), sidecar services and their ports.

The core knows none of them: each test registers its own, as a third party
would, and reads profiles written to disk.
"""

import pytest
from pydantic import BaseModel, ConfigDict

from bottle import hookimpl
from bottle.errors import EnvironmentProblem
from bottle.manifests.profile import load_profile
from bottle.manifests.tables import BuiltinProfile, ProfileTable, by_key


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int = 1
    high: int = 10


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    value: str = ""


def ordered(limits: Limits):
    return None if limits.low <= limits.high else ("limits.low", "it is above `high`")


TABLES = (
    ProfileTable(key="limits", model=Limits, check=ordered, default=Limits),
    ProfileTable(key="routes", model=Route, many=True, merge=by_key(lambda route: route.host), default=tuple,
                 check_each=lambda routes: ("routes", "empty host") if any(not r.host for r in routes) else None),
)


@pytest.fixture
def load(home):
    return lambda name, **kw: load_profile(name, home.config_dir, tables=TABLES, **kw)


def test_a_table_merges_field_by_field_and_an_array_by_key(home, load):
    home.profile("base", '[limits]\nlow = 2\nhigh = 5\n[[routes]]\nhost = "a"\nvalue = "1"\n[[routes]]\nhost = "b"\n')
    home.profile("child", 'extends = "base"\n[limits]\nhigh = 7\n[[routes]]\nhost = "a"\nvalue = "2"\n')
    profile = load("child")
    assert profile.table("limits") == Limits(low=2, high=7)
    assert profile.table("routes") == (Route(host="a", value="2"), Route(host="b"))


def test_an_unset_table_has_its_default_and_an_unregistered_one_is_absent(home, load):
    home.profile("plain", "")
    assert load("plain").table("limits") == Limits() and load("plain").table("routes") == ()
    assert load_profile("plain", home.config_dir).table("limits") is None


def test_the_merged_check_names_every_file_that_set_the_table(home, load, usage_error):
    base = home.profile("base", "[limits]\nlow = 8\n")
    child = home.profile("child", 'extends = "base"\n[limits]\nhigh = 5\n')
    usage_error(lambda: load("child"), f"{child}, {base}: field `limits.low`: it is above `high`")
    assert load("base").table("limits") == Limits(low=8, high=10)  # fine alone


def test_each_files_check_names_that_file(home, load, usage_error):
    home.profile("base", '[[routes]]\nhost = "a"\n')
    bad = home.profile("child", 'extends = "base"\n[[routes]]\nhost = ""\n')
    usage_error(lambda: load("child"), f"{bad}: field `routes`: empty host")


def test_an_unknown_table_names_file_and_field_and_says_a_plugin_may_be_missing(home, load, usage_error):
    path = home.profile("odd", "[hello]\ngreeting = 1\n")
    message = usage_error(lambda: load("odd"), path, "field `hello`: unknown key")
    assert "a table of a plugin that is not loaded" in message
    path = home.profile("typo", "[limits]\nlwo = 1\n")
    usage_error(lambda: load("typo"), path, "field `limits.lwo`")


def test_a_builtin_profile_is_validated_as_a_file_would_be(home, load, usage_error):
    built = load("default", builtin=lambda path: BuiltinProfile(data={"limits": {"low": 3}}, notes=("mine",)))
    assert (built.table("limits"), built.files, built.notes) == (Limits(low=3), (), ("mine",))
    usage_error(lambda: load("default", builtin=lambda path: BuiltinProfile(data={"limits": {"nope": 1}})),
                "field `limits.nope`")
    usage_error(lambda: load("default", builtin=lambda path: None), "no bottle profile 'default'")


def test_a_key_two_plugins_register_is_an_error_naming_both():
    from bottle.plugins import load_plugins

    plugins = load_plugins(allowed=[])

    class First:
        @hookimpl
        def bottle_register_profile_tables(self, register):
            register(TABLES[0])

    class Second(First):
        pass

    plugins.manager.register(First(), name="first")
    plugins.manager.register(Second(), name="second")
    with pytest.raises(EnvironmentProblem, match="Profile table 'limits' is registered twice: by plugin 'first' and "
                                                 "by plugin 'second'"):
        plugins.profile_tables


def test_a_service_or_port_two_plugins_plan_is_an_error_naming_both(home):
    from bottle.prepare import build_plan
    from bottle.settings import load_settings
    from bottle.sidecar.service import SidecarService

    from bottle.plugins import load_plugins

    def serving(name: str, port: int):
        class Serving:
            @hookimpl
            def bottle_sidecar_services(self, ctx):
                return [SidecarService(name=name, argv=("true",), ready="up", port=port)]

        return Serving()

    home.profile("default", "")
    home.agent("agent")
    for second, clash in ((serving("echo", 9001), "The sidecar service 'echo'"),
                          (serving("other", 9000), "The sidecar 'port 9000'")):
        plugins = load_plugins()
        plugins.manager.register(serving("echo", 9000), name="first")
        plugins.manager.register(second, name="second")
        # pluggy calls the plugin registered last first
        with pytest.raises(EnvironmentProblem, match=f"{clash} is planned twice: by plugin 'second' and by "
                                                     "plugin 'first'"):
            build_plan("agent", settings=load_settings(), plugins=plugins)
