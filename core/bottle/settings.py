"""Settings: command-line flags > ``BOTTLE_*`` environment > config.toml > defaults.

Settings say *how* bottle works on this machine (which backend, which image,
where guest files go); *what* a bottle may reach lives in bottle profiles.
Plugins add their own keys (``bottle_register_settings``), read the same way.
"""

import functools
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bottle import paths
from bottle.errors import UsageError
from bottle.manifests.profile import Runtime
from bottle.plugin_choice import split_commas
from bottle.validation import describe_errors

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob, documented where it is declared (``bottle doctor`` shows the file)."""

    model_config = SettingsConfigDict(env_prefix="BOTTLE_", extra="forbid")

    backend: str = Field("docker", description="backend used when the profile names none")
    image: str = Field("bottle/agent:latest", description="agent image tag")
    sidecar_image: str = Field("bottle/sidecar:latest", description="sidecar image tag (the plugins' services)")
    runtime: Runtime | None = Field(
        None, description='what runs sandboxes whose profile sets no `runtime`: "runc", "runsc" (gVisor), "auto" '
        "(runsc where registered); unset: the backend's default")
    guest_user: str = Field("agent", description="non-root user the agent runs as")
    guest_uid: int = Field(1000, ge=1, description="uid of guest_user (files copied in are owned by it)")
    guest_home: str = Field("/home/agent", description="guest_user's home in the guest")
    guest_workdir: str = Field("/workspace", description="working directory of the agent")
    guest_skills_dir: str | None = Field(
        None, description="where skills go in the guest (default: where the agent reads them, as its plugin says)")
    audit_max_mb: int = Field(
        64, ge=1, description="each bottle's audit log keeps to this many MiB of rows, dropping the oldest (counted)"
    )
    disable_plugins: CommaList = Field(
        default_factory=list, description="plugin names (entry points) not to load, comma separated"
    )
    plugins: CommaList | None = Field(
        None, description="the only plugins (entry-point names) to load, comma separated; unset: all, empty: none "
        "(the core's own commands load whatever this says)"
    )

    @field_validator("disable_plugins", "plugins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("guest_home", "guest_workdir", "guest_skills_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("expected an absolute guest path (starting with /)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Evaluated per instantiation so that XDG_CONFIG_HOME changes are honoured.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=paths.config_file())
        return (init_settings, env_settings, toml)


@functools.cache
def settings_model(extensions: tuple[type[BaseModel], ...] = ()) -> type[Settings]:
    """The settings with the fields plugins add (``bottle_register_settings``): one flat set of keys,
    read from the same flags, ``BOTTLE_*`` variables and config file, each key unknown to all an error."""
    if not extensions:
        return Settings
    return create_model("Settings", __base__=(Settings, *extensions))


def load_settings(*, extensions: Sequence[type[BaseModel]] = (), **flags: Any) -> Settings:
    """Settings, with the plugins' *extensions*, and *flags* (only those the user gave) on top; bad values are
    a UsageError."""
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return settings_model(tuple(extensions))(**given)
    except ValidationError as err:
        where = f"command-line flags, BOTTLE_* environment or {paths.config_file()}"
        raise UsageError(f"Invalid settings ({where}):\n{describe_errors(err)}") from None
    except (OSError, ValueError) as err:  # unreadable or non-TOML config file
        raise UsageError(f"Cannot read {paths.config_file()}: {err}") from None
