"""The images plugin's settings: keys of bottle's settings, read from flags, BOTTLE_* and config.toml."""

from bottle.settings import load_settings


def test_the_base_image_is_named_after_its_suite(monkeypatch, plugins):
    def load(**flags):
        return load_settings(extensions=plugins.settings_extensions, **flags)

    assert (load().debian_suite, load().image_base) == ("trixie", "debian:trixie-slim")
    monkeypatch.setenv("BOTTLE_DEBIAN_SUITE", "bookworm")
    assert load().image_base == "debian:bookworm-slim"
    assert load(image_base="local/base:1").image_base == "local/base:1"


def test_without_the_plugin_its_keys_are_unknown(home, usage_error):
    home.config('debian_suite = "bookworm"\n')
    usage_error(load_settings, home.config_file, "`debian_suite`")


def test_a_key_the_core_has_cannot_be_registered_again(plugins):
    from pydantic import BaseModel
    import pytest

    from bottle.errors import EnvironmentProblem
    from bottle.plugins import load_plugins

    class Clash(BaseModel):
        image: str = "mine"

    fresh = load_plugins()

    class Plugin:
        from bottle import hookimpl

        @hookimpl
        def bottle_register_settings(self, register):
            register(Clash)

    fresh.manager.register(Plugin(), name="clashing")
    with pytest.raises(EnvironmentProblem, match="Setting 'image' is registered twice: by plugin 'core' and by plugin 'clashing'"):
        fresh.settings_extensions
