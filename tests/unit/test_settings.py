"""Settings: flags > BOTTLE_* env > $XDG_CONFIG_HOME/bottle/config.toml > defaults."""

import pytest

from bottle.plugin_choice import plugin_choice
from bottle.settings import Settings, load_settings

DEFAULT_IMAGE = Settings.model_fields["image"].default


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), DEFAULT_IMAGE),
        (("file",), "from-file"),
        (("file", "env"), "from-env"),
        (("env",), "from-env"),
        (("file", "env", "flag"), "from-flag"),
        (("file", "flag"), "from-flag"),
    ],
)
def test_precedence(home, monkeypatch, layers, expected):
    if "file" in layers:
        home.config('image = "from-file"\n')
    if "env" in layers:
        monkeypatch.setenv("BOTTLE_IMAGE", "from-env")
    flags = {"image": "from-flag"} if "flag" in layers else {}
    assert load_settings(**flags).image == expected


def test_precedence_is_per_field(home, monkeypatch):
    home.config('image = "from-file"\nguest_user = "bob"\nguest_uid = 1234\n')
    monkeypatch.setenv("BOTTLE_GUEST_UID", "4321")
    settings = load_settings(image="from-flag")
    assert (settings.image, settings.guest_user, settings.guest_uid) == ("from-flag", "bob", 4321)


def test_flags_not_given_do_not_hide_lower_layers(monkeypatch):
    monkeypatch.setenv("BOTTLE_IMAGE", "from-env")
    assert load_settings(image=None, backend=None).image == "from-env"


def test_config_file_follows_xdg_config_home(home, monkeypatch, tmp_path):
    home.config('image = "first"\n')
    other = tmp_path / "other-config"
    (other / "bottle").mkdir(parents=True)
    (other / "bottle" / "config.toml").write_text('image = "second"\n')
    assert load_settings().image == "first"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(other))
    assert load_settings().image == "second"


@pytest.mark.parametrize("xdg", [None, "relative/config"], ids=["unset", "relative-ignored"])
def test_config_file_falls_back_to_home_dot_config(home, monkeypatch, xdg):
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME")
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    config = home.home / ".config" / "bottle" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('image = "from-home"\n')
    assert load_settings().image == "from-home"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a,b", ["a", "b"]), (" a , b ,, ", ["a", "b"]), ("skills", ["skills"]), ("", [])],
)
def test_disable_plugins_from_env_is_comma_separated(monkeypatch, value, expected):
    monkeypatch.setenv("BOTTLE_DISABLE_PLUGINS", value)
    assert load_settings().disable_plugins == expected


def test_disable_plugins_from_config_file_is_a_list(home):
    home.config('disable_plugins = ["docker", "skills"]\n')
    assert load_settings().disable_plugins == ["docker", "skills"]


@pytest.mark.parametrize(("env", "toml", "expected"), [
    ({}, "", ([], None)),
    ({"BOTTLE_PLUGINS": ""}, "", ([], [])),
    ({"BOTTLE_PLUGINS": "docker, prompt", "BOTTLE_DISABLE_PLUGINS": "skills"}, "", (["skills"], ["docker", "prompt"])),
    ({}, 'disable_plugins = ["docker"]\nplugins = "prompt,skills"\n', (["docker"], ["prompt", "skills"])),
    ({"BOTTLE_DISABLE_PLUGINS": ""}, 'disable_plugins = ["docker"]\nplugins = []\n', ([], [])),
])
def test_the_plugins_to_load_are_read_as_the_settings_read_them(home, monkeypatch, env, toml, expected):
    """plugin_choice reads them without pydantic, for `bottle --help`; Settings documents and validates them."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home.config(toml)
    settings = load_settings()
    assert plugin_choice() == (settings.disable_plugins, settings.plugins) == expected


def test_plugins_to_load_that_are_not_names_are_refused(home, usage_error):
    home.config("plugins = 3\n")
    usage_error(plugin_choice, home.config_file, "`plugins`")
    usage_error(load_settings, home.config_file, "`plugins`")


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('colour = "blue"', "colour"),
        ('guest_uid = "many"', "guest_uid"),
        ("guest_uid = 0", "guest_uid"),
        ("build_keep_ca = [1]", "build_keep_ca"),
        ('guest_home = "home/agent"', "guest_home"),
    ],
)
def test_bad_config_file_names_file_and_field(home, usage_error, toml, field):
    home.config(toml + "\n")
    usage_error(load_settings, home.config_file, f"`{field}`")


def test_config_file_not_toml(home, usage_error):
    home.config("image = = nope\n")
    usage_error(load_settings, home.config_file)


def test_bad_env_value_names_the_field(monkeypatch, usage_error):
    monkeypatch.setenv("BOTTLE_GUEST_UID", "not-a-number")
    usage_error(load_settings, "`guest_uid`", "BOTTLE_")


@pytest.mark.parametrize("field", ["guest_home", "guest_workdir", "guest_skills_dir"])
@pytest.mark.parametrize("source", ["flag", "env"])
def test_relative_guest_paths_rejected(monkeypatch, usage_error, field, source):
    flags = {}
    if source == "env":
        monkeypatch.setenv(f"BOTTLE_{field.upper()}", "relative/dir")
    else:
        flags[field] = "relative/dir"
    usage_error(lambda: load_settings(**flags), f"`{field}`", "absolute")


def test_a_plugins_settings_are_read_like_the_cores_and_clash_by_name(monkeypatch, home, usage_error):
    from pydantic import BaseModel, Field

    class Extra(BaseModel):
        colour: str = Field("blue")

    assert load_settings(extensions=[Extra]).colour == "blue"
    monkeypatch.setenv("BOTTLE_COLOUR", "red")
    assert load_settings(extensions=[Extra]).colour == "red"
    home.config('colour = "green"\nshade = 1\n')
    monkeypatch.delenv("BOTTLE_COLOUR")
    usage_error(lambda: load_settings(extensions=[Extra]), home.config_file, "`shade`")
