"""Bottle profiles: where an agent runs and what it may reach.

A profile widens what the agent can touch, so it is read from the user's
config dir only (``bottles/NAME.toml``), never from the repository under work.
``extends`` chains profiles; a child's fields override its parent's, ``env``
tables merge key by key, and a cycle is an error naming every file in it.
"""

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate

MEMORY_PATTERN = r"^[0-9]+[bkmgBKMG]?$"


class ProfileFile(BaseModel):
    """One profile file as written; every field optional so that ``extends`` can fill gaps."""

    model_config = ConfigDict(extra="forbid")

    extends: str | None = Field(None, pattern=NAME_PATTERN)
    backend: str | None = Field(None, pattern=NAME_PATTERN)
    image: str | None = None
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: str | None = Field(None, pattern=MEMORY_PATTERN, description="e.g. 512m, 4g")
    pids: int | None = Field(None, gt=0)
    env: EnvMap = Field(default_factory=dict)


class Profile(BaseModel):
    """A resolved profile: the ``extends`` chain merged, with the files it came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    files: tuple[Path, ...] = ()
    backend: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None
    env: dict[str, str] = Field(default_factory=dict)


def profiles_dir(config_dir: Path) -> Path:
    return config_dir / "bottles"


def _read_profile(path: Path) -> ProfileFile:
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    return validate(ProfileFile, data, path, "bottle profile")


def load_profile(name: str, config_dir: Path, referrer: str = "") -> Profile:
    """Load profile *name* and its ``extends`` chain.

    The profile ``default`` may be absent: it then means "no restrictions
    beyond the settings". Any other missing profile is an error, prefixed by
    *referrer* (where the name came from) or by the file whose ``extends``
    names it.
    """
    check_name(name, "bottle profile")
    directory = profiles_dir(config_dir)
    chain: list[tuple[Path, ProfileFile]] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        path = directory / f"{current}.toml"
        if current in seen:
            cycle = " -> ".join(str(directory / f"{n}.toml") for n in [*seen[seen.index(current):], current])
            raise UsageError(f"{path}: field `extends`: profiles extend each other in a cycle: {cycle}.")
        seen.append(current)
        if not path.is_file():
            if current == "default" and not chain:
                return Profile(name=name)
            if chain:
                referrer = f"{chain[-1][0]}: field `extends`: "
            known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
            hint = f" Known profiles: {', '.join(known)}." if known else ""
            raise UsageError(f"{referrer}no bottle profile {current!r} (expected {path}).{hint}")
        profile_file = _read_profile(path)
        chain.append((path, profile_file))
        current = profile_file.extends

    merged: dict = {"env": {}}
    for _, layer in reversed(chain):  # parents first, children override
        for field, value in layer.model_dump(exclude={"extends", "env"}, exclude_none=True).items():
            merged[field] = value
        merged["env"].update(layer.env)
    return Profile(name=name, files=tuple(path for path, _ in chain), **merged)
