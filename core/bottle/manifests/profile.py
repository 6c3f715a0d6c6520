"""Bottle profiles: where an agent runs and what it may reach.

A profile widens what the agent can touch, so it is read from the user's
config dir only (``bottles/NAME.toml``), never from the repository under work.
``extends`` chains profiles; a child's fields override its parent's, ``env``
tables merge key by key, and a cycle is an error naming every file in it.
"""

import re
import tomllib
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate

MEMORY_PATTERN = r"^[0-9]+[bkmgBKMG]?$"


class EgressConfig(BaseModel):
    """``[egress]``: what the agent may reach through the sidecar's proxy (deny by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[str, ...] = Field((), description='host rules: "host", "*.suffix", "host:port", "http://host", IP or CIDR')
    secret_patterns: tuple[str, ...] = Field((), description="extra regexes; a request matching one is blocked")
    trust: tuple[Path, ...] = Field(
        (), description="PEM CA files the sidecar trusts upstream besides its system store (internal services)"
    )

    @field_validator("trust")
    @classmethod
    def _pem_files(cls, files: tuple[Path, ...]) -> tuple[Path, ...]:
        for path in files:
            try:
                text = path.expanduser().read_text()
            except (OSError, UnicodeDecodeError) as err:
                raise ValueError(f"cannot read CA file {path}: {err}") from None
            if "-----BEGIN CERTIFICATE-----" not in text:
                raise ValueError(f"{path} holds no PEM certificate")
        return tuple(path.expanduser() for path in files)

    @field_validator("allow")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        from bottle.sidecar.policy import RuleError, parse_rule

        for rule in rules:
            try:
                parse_rule(rule)
            except RuleError as err:
                raise ValueError(str(err)) from None
        return rules

    @field_validator("secret_patterns")
    @classmethod
    def _patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from None
        return patterns


class CredentialRoute(BaseModel):
    """``[[credentials]]``: the sidecar injects a host secret into requests to one host.

    The real value is read from the host's environment variable ``env`` at
    launch and goes to the sidecar only; the agent's ``env`` variable of the
    same name holds a placeholder.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(pattern=r"^[A-Za-z0-9.-]+$", description="exact host name the credential is for")
    header: str = Field("authorization", pattern=r"^[A-Za-z0-9-]+$")
    scheme: str = Field("", pattern=r"^[A-Za-z]*$", description='e.g. "Bearer"; empty sends the bare value')
    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="host environment variable holding the value")


class GitIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("bottle agent", min_length=1)
    email: str = Field("agent@bottle.invalid", pattern=r"^[^@\s]+@[^@\s]+$")


class GitCredential(BaseModel):
    """How the gate authenticates upstream; the value is read on the host at launch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["token", "ssh_key"]
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="host variable holding it")
    file: Path | None = Field(None, description="host file holding it (an SSH private key, say)")
    username: str = Field("x-access-token", description="HTTP user sent with a token")

    @field_validator("file")
    @classmethod
    def _expand(cls, file: Path | None) -> Path | None:
        return file.expanduser() if file is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> "GitCredential":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (a host variable) or `file` (a host file)")
        return self


class GitConfig(BaseModel):
    """``[git]``: the gate between the agent's commits and the real remote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str | None = Field(None, description="the real remote: ssh or https URL, or a local path")
    push_refs: tuple[str, ...] = ("refs/heads/bottle/*",)
    protected: tuple[str, ...] | None = Field(None, description="refs never updated; default: upstream's default branch")
    allow_force: bool = False
    identity: GitIdentity = GitIdentity()
    max_push_mb: int = Field(50, gt=0)
    credential: GitCredential | None = None
    known_hosts: str | None = Field(None, description="upstream's SSH host key line(s), pinned")


class SuperviseConfig(BaseModel):
    """``[supervise]``: the channel through which the agent asks and the operator answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    answer_timeout: int = Field(600, gt=0, le=86400, description="seconds a request waits for an answer")
    deny: tuple[dict, ...] = Field((), description='PreToolUse deny rules: {tool, pattern, field, reason}')

    @field_validator("deny")
    @classmethod
    def _rules(cls, rules: tuple[dict, ...]) -> tuple[dict, ...]:
        from bottle.sidecar.deny_rules import DenyRuleError, parse_rules

        try:
            parse_rules(list(rules))
        except DenyRuleError as err:
            raise ValueError(str(err)) from None
        return rules


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
    egress: EgressConfig = EgressConfig()
    credentials: tuple[CredentialRoute, ...] = ()
    git: GitConfig | None = None
    supervise: SuperviseConfig | None = None


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
    egress: EgressConfig = EgressConfig()
    credentials: tuple[CredentialRoute, ...] = ()
    git: GitConfig = GitConfig()
    supervise: SuperviseConfig = SuperviseConfig()


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
    allow: dict[str, None] = {}  # ordered set: a child adds to its parents' rules
    patterns: dict[str, None] = {}
    trust: dict[Path, None] = {}
    routes: dict[tuple[str, str], CredentialRoute] = {}
    git: dict = {}
    supervise: dict = {}
    for _, layer in reversed(chain):  # parents first, children override
        for field, value in layer.model_dump(
            exclude={"extends", "env", "egress", "credentials", "git", "supervise"}, exclude_none=True
        ).items():
            merged[field] = value
        if layer.git is not None:  # field by field: a child sets only what it changes
            git.update({field: getattr(layer.git, field) for field in layer.git.model_fields_set})
        if layer.supervise is not None:
            supervise.update({f: getattr(layer.supervise, f) for f in layer.supervise.model_fields_set})
        merged["env"].update(layer.env)
        allow.update(dict.fromkeys(layer.egress.allow))
        patterns.update(dict.fromkeys(layer.egress.secret_patterns))
        trust.update(dict.fromkeys(layer.egress.trust))
        routes.update({(route.host, route.header.lower()): route for route in layer.credentials})
    return Profile(
        name=name,
        files=tuple(path for path, _ in chain),
        egress=EgressConfig(allow=tuple(allow), secret_patterns=tuple(patterns), trust=tuple(trust)),
        credentials=tuple(routes.values()),
        git=GitConfig(**git),
        supervise=SuperviseConfig(**supervise),
        **merged,
    )
