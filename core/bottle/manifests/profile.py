"""Bottle profiles: where an agent runs and what it may reach.

A profile widens what the agent can touch, so it is read from the user's
config dir only (``bottles/NAME.toml``), never from the repository under work.
``extends`` chains profiles; a child's fields override its parent's, ``env``
tables merge key by key, and a cycle is an error naming every file in it.
The core reads only where and with what limits a bottle runs; every other
table is a plugin's (``bottle.manifests.tables``), merged by its own rule.
"""

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, create_model

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate
from bottle.manifests.tables import BuiltinProfile, ProfileTable

SIZE_PATTERN = re.compile(r"^[0-9]+[bkmgBKMG]?$")

#: What runs a container sandbox's processes (a backend without containers refuses all but "auto").
Runtime = Literal["runc", "runsc", "auto"]

#: How a profile lifts one of bottle's default limits (``bottle.limits``): ``pids = "unlimited"``.
UNLIMITED = "unlimited"


def _limit(expected: str, accept: Callable[[object], object | None]) -> PlainValidator:
    """A limit field's check: what *accept* takes (it returns the value, converted, or None), or "unlimited"."""

    def check(value: object) -> object:
        if value == UNLIMITED:
            return value
        accepted = accept(value)
        if accepted is None:
            raise ValueError(f'expected {expected}, or "{UNLIMITED}" to lift bottle\'s default limit')
        return accepted

    return PlainValidator(check)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


Cpus = Annotated[float | Literal["unlimited"], _limit(
    "a number of CPUs above 0 and at most 1024 (2, 0.5)",
    lambda value: float(value) if _number(value) and 0 < value <= 1024 else None,
)]
Size = Annotated[str, _limit(
    'a size above 0 such as "512m" or "4g" (b, k, m, g; no unit: bytes)',
    lambda value: value if isinstance(value, str) and SIZE_PATTERN.match(value) and int(value.rstrip("bkmgBKMG"))
    else None,
)]
Pids = Annotated[int | Literal["unlimited"], _limit(
    "a number of processes above 0 (512)",
    lambda value: value if _number(value) and isinstance(value, int) and value > 0 else None,
)]

class ProfileFile(BaseModel):
    """One profile file's core fields as written; every field optional so that ``extends`` can fill gaps.

    The tables plugins register are added to it (:func:`file_model`).
    """

    model_config = ConfigDict(extra="forbid")

    extends: str | None = Field(None, pattern=NAME_PATTERN)
    backend: str | None = Field(None, pattern=NAME_PATTERN)
    image: str | None = None
    # Limits: unset, bottle's defaults for the host apply (bottle.limits); "unlimited" lifts one.
    cpus: Cpus | None = None
    memory: Size | None = Field(None, description="RAM, swap included, and files kept in memory (tmpfs)")
    pids: Pids | None = Field(None, description="processes and threads")
    disk: Size | None = Field(None, description="what the agent may write")
    runtime: Runtime | None = Field(None, description='what runs the sandbox\'s processes: "runc" (the '
                                    'engine\'s default), "runsc" (gVisor: the agent\'s system calls go to a '
                                    'kernel of its own), "auto" (runsc where it is registered, else runc)')
    env: EnvMap = Field(default_factory=dict)


CORE_FIELDS = frozenset(ProfileFile.model_fields)


class Profile(BaseModel):
    """A resolved profile: the ``extends`` chain merged, with the files it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    files: tuple[Path, ...] = ()
    backend: str | None = None
    image: str | None = None
    cpus: Cpus | None = None
    memory: Size | None = None
    pids: Pids | None = None
    disk: Size | None = None
    runtime: Runtime | None = None
    env: dict[str, str] = Field(default_factory=dict)
    tables: Mapping[str, Any] = Field(default_factory=dict, description="each registered table's merged value")
    notes: tuple[str, ...] = Field((), description="how the profile was resolved, for the plan to show")

    def table(self, key: str) -> Any:
        """The merged value of the plugin table *key* (``[git]``), or None when no layer set it and it has no default."""
        return self.tables.get(key)


def file_model(tables: Sequence[ProfileTable]) -> type[ProfileFile]:
    """The model of one profile file: the core's fields and each registered table, all optional."""
    if not tables:
        return ProfileFile
    fields = {table.key: ((tuple[table.model, ...] if table.many else table.model) | None, None) for table in tables}
    return create_model("ProfileFile", __base__=ProfileFile, **fields)


def profiles_dir(config_dir: Path) -> Path:
    return config_dir / "bottles"


def _read_profile(path: Path, model: type[ProfileFile], data: dict | None = None) -> ProfileFile:
    if data is None:
        try:
            data = tomllib.loads(read_text(path))
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"{path}: not valid TOML: {err}") from None
    unknown = sorted(key for key in data if key not in model.model_fields)
    hint = (f" (a table of a plugin that is not loaded? `bottle plugins` lists what each one reads)"
            if any(isinstance(data[key], (dict, list)) for key in unknown) else "")
    try:
        return validate(model, data, path, "bottle profile")
    except UsageError as err:
        raise UsageError(f"{err}{hint}") from None


def load_profile(name: str, config_dir: Path, referrer: str = "", *, tables: Sequence[ProfileTable] = (),
                 builtin: Callable[[Path], BuiltinProfile | None] | None = None) -> Profile:
    """Load profile *name* and its ``extends`` chain, with the plugin *tables* merged by their own rules.

    The profile ``default`` may be absent: it is then what *builtin* says
    (the ``bottle_builtin_profile`` hook). Any other missing profile is an
    error, prefixed by *referrer* (where the name came from) or by the file
    whose ``extends`` names it.
    """
    check_name(name, "bottle profile")
    model = file_model(tables)
    directory = profiles_dir(config_dir)
    chain: list[tuple[Path, ProfileFile]] = []
    seen: list[str] = []
    notes: tuple[str, ...] | None = None  # set: the profile is a plugin's built-in, with no file
    current: str | None = name
    while current is not None:
        path = directory / f"{current}.toml"
        if current in seen:
            cycle = " -> ".join(str(directory / f"{n}.toml") for n in [*seen[seen.index(current):], current])
            raise UsageError(f"{path}: field `extends`: profiles extend each other in a cycle: {cycle}.")
        seen.append(current)
        found = builtin(path) if not path.is_file() and current == "default" and not chain and builtin else None
        if found is not None:
            chain.append((path, _read_profile(path, model, found.data)))
            notes = found.notes
            break
        if not path.is_file():
            if chain:
                referrer = f"{chain[-1][0]}: field `extends`: "
            known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
            hint = f" Known profiles: {', '.join(known)}." if known else ""
            raise UsageError(f"{referrer}no bottle profile {current!r} (expected {path}).{hint}")
        profile_file = _read_profile(path, model)
        chain.append((path, profile_file))
        current = profile_file.extends
    files = tuple(path for path, _ in chain) if notes is None else ()
    chain.reverse()  # parents first: children override
    return Profile(name=name, files=files, notes=notes or (), tables=_merge_tables(chain, tables), **_merge_core(chain))


def _merge_core(chain: list[tuple[Path, ProfileFile]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"env": {}}
    for _, layer in chain:
        merged.update(layer.model_dump(include=CORE_FIELDS - {"extends", "env"}, exclude_none=True))
        merged["env"].update(layer.env)
    return merged


def _merge_tables(chain: list[tuple[Path, ProfileFile]], tables: Sequence[ProfileTable]) -> dict[str, Any]:
    merged = {}
    for table in tables:
        layers = [(path, getattr(layer, table.key)) for path, layer in chain if getattr(layer, table.key) is not None]
        for path, value in layers:
            _report(table.check_each and table.check_each(value), [path])
        if layers:
            value = table.merge([value for _, value in layers])
            _report(table.check and table.check(value), [path for path, _ in reversed(layers)])  # child first
        elif table.default is not None:
            value = table.default()
        else:
            continue
        merged[table.key] = value
    return merged


def _report(problem: tuple[str, str] | None, files: list[Path]) -> None:
    if problem is not None:
        raise UsageError(f"{', '.join(map(str, files))}: field `{problem[0]}`: {problem[1]}.")
