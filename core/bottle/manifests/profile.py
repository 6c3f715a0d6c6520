"""Bottle profiles: where an agent runs and what it may reach.

A profile widens what the agent can touch, so it is read from the user's
config dir only (``bottles/NAME.toml``), never from the repository under work.
``extends`` chains profiles; a child's fields override its parent's, ``env``
tables merge key by key, and a cycle is an error naming every file in it.
"""

import os
import re
import tomllib
from pathlib import Path

from typing import Annotated, Callable, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, ValidationInfo, field_validator, model_validator,
)

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate

SIZE_PATTERN = re.compile(r"^[0-9]+[bkmgBKMG]?$")

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

#: What a secret found in a request does: "block" answers 403 (nothing leaves),
#: "redact" replaces the secret by a marker and sends the request on.
SecretMode = Literal["block", "redact"]


class SecretExempt(BaseModel):
    """``[egress] secret_exempt``: what the sidecar's secret scanner does not report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detectors: tuple[str, ...] = Field(
        (), description='detectors turned off, by the name a block or the audit log gives ("JSON Web Token") '
        'or as a marker spells it ("json-web-token")'
    )
    values: tuple[str, ...] = Field(
        (), description="exact strings that look like secrets and are none (a test fixture's fake key): "
        "nothing found inside one is reported. The vendors' documented example keys are exempt already"
    )

    @field_validator("detectors")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from bottle_egress_sidecar.policy import parse_detector

        for name in names:
            parse_detector(name)  # its ValueError names the detectors there are
        return names

    @field_validator("values")
    @classmethod
    def _not_empty(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not all(values):
            raise ValueError("an exempt value must not be empty")
        return values


class EgressConfig(BaseModel):
    """``[egress]``: what the agent may reach through the sidecar's proxy (deny by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[str, ...] = Field((), description='host rules: "host", "*.suffix", "host:port", "http://host", IP or CIDR')
    secret_patterns: tuple[str, ...] = Field(
        (), description="extra regexes; what one matches is a secret, handled as `on_secret` says"
    )
    trust: tuple[Path, ...] = Field(
        (), description="PEM CA files the sidecar trusts upstream besides its system store (internal services)"
    )
    on_secret: dict[str, SecretMode] = Field(
        default_factory=dict,
        description='what a secret found in a request does, by host rule (written as in `allow`): "block" answers '
        '403; "redact" replaces each secret by a marker naming its detector, such as '
        "[bottle:redacted:github-token:1] (the same for that secret as long as the bottle runs), and sends the "
        "request on. The last rule that matches decides, a child profile's after its parents'. Where none "
        "matches: block, except api.anthropic.com, which redacts (the Messages API is sent the whole "
        "conversation again each time: one secret blocked would end the session). A [[credentials]] route's "
        "own `on_secret` comes before all of these",
    )
    secret_exempt: SecretExempt = SecretExempt()

    def secret_modes(self) -> dict[str, str]:
        """``on_secret`` after the built-in entry, which any of the profile's overrides: the Anthropic API redacts."""
        return _then({ANTHROPIC_API_HOST: "redact"}, self.on_secret)

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

    @field_validator("allow", "on_secret")
    @classmethod
    def _rules(cls, rules: tuple[str, ...] | dict[str, str]) -> tuple[str, ...] | dict[str, str]:
        from bottle_egress_sidecar.policy import RuleError, parse_rule

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


def _then(modes: dict[str, str], entries: dict[str, str]) -> dict[str, str]:
    """*modes* followed by *entries*; a rule given again moves to the end, since the last match decides."""
    return {**{rule: mode for rule, mode in modes.items() if rule not in entries}, **entries}


#: Credentials whose shape clients know: the placeholder keeps the prefix (and
#: the length, 108, and the "AA" end) of Anthropic's API keys and of the Claude
#: subscription tokens `claude setup-token` makes.
PLACEHOLDER_PREFIXES = {"ANTHROPIC_API_KEY": "sk-ant-api03-", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-"}
SHAPED_PLACEHOLDER_LENGTH = 108


class CredentialRoute(BaseModel):
    """``[[credentials]]``: the sidecar injects a host secret into requests to one place, a host and port
    (and, optionally, paths under a prefix): another port of the host may be another server.

    The real value is read from the host's environment variable ``env`` at
    launch and goes to the sidecar only; the agent's ``env`` variable of the
    same name holds a placeholder.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(pattern=r"^[A-Za-z0-9.-]+$", description="exact host name the credential is for")
    port: StrictInt = Field(443, ge=1, le=65535, description="the HTTPS port the credential is sent to")
    path: str = Field("", description='a path prefix such as "/v1/": the credential goes to paths under it only; '
                      "empty: every path")
    header: str = Field("authorization", pattern=r"^[A-Za-z0-9-]+$")
    scheme: str = Field("", pattern=r"^[A-Za-z]*$", description='e.g. "Bearer"; empty sends the bare value')
    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="host environment variable holding the value")
    on_secret: SecretMode | None = Field(
        None, description='what a secret in a request to this host does, "block" or "redact"; '
        "unset, [egress] on_secret decides"
    )

    @field_validator("path")
    @classmethod
    def _prefix(cls, path: str) -> str:
        from bottle_egress_sidecar.policy import parse_path_prefix

        return parse_path_prefix(path)  # its ValueError says what a prefix may be

    @property
    def placeholder(self) -> str:
        """What the agent's ``env`` holds instead of the value: marked as bottle's, never secret.

        Shaped like the real value where its shape is known, so that a client
        which checks the format (prefix, length) accepts it; the sidecar's
        secret scanner lets placeholders through.
        """
        marker = f"bottle-placeholder-{self.env.lower()}"
        prefix = PLACEHOLDER_PREFIXES.get(self.env)
        if prefix is None:
            return marker
        return f"{prefix}{marker.replace('_', '-')}-".ljust(SHAPED_PLACEHOLDER_LENGTH - 2, "x") + "AA"


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


def upstream_transport(upstream: str) -> str:
    """How the gate reaches *upstream*: "local" (a path), "ssh" (git's scp-like ``[user@]host:path``) or the
    URL's scheme; by the gate's own rule, so that what is refused here is what the gate could not do."""
    from bottle_gitgate_sidecar.gitgate import is_ssh

    if "://" in upstream:
        return upstream.split("://", 1)[0].lower()
    return "ssh" if is_ssh(upstream) else "local"


class GitConfig(BaseModel):
    """``[git]``: the gate between the agent's commits and the real remote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str | None = Field(None, description="the real remote: ssh or https URL, or a local path")
    push_refs: tuple[str, ...] = Field(
        ("refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*"),
        description="refs the agent may push: fnmatch globs over full ref names, {slug} replaced by the bottle's "
        "slug. The default is the bottle's own branch and those below it, so that no bottle moves another's; "
        'refs/heads/bottle/* lets bottles share. An agent\'s `branch` is its work branch when these allow it, '
        "else it starts from that branch and works on bottle/<slug>",
    )
    fetch_refs: tuple[str, ...] | None = Field(
        None,
        description="refs the agent may fetch besides push_refs (globs, {slug} replaced; HEAD: upstream's default "
        "branch); nothing else of upstream enters the gate. Default: HEAD and the agent's `branch`",
    )
    protected: tuple[str, ...] | None = Field(None, description="refs never updated; default: upstream's default branch")
    allow_force: StrictBool = False
    identity: GitIdentity = GitIdentity()
    max_push_mb: StrictInt = Field(50, gt=0)
    max_push_refs: StrictInt = Field(20, gt=0, description="refs one push may update (each is checked and audited)")
    credential: GitCredential | None = None
    known_hosts: str | None = Field(None, description="upstream's SSH host key line(s), pinned")

    def pairing_problem(self) -> tuple[str, str] | None:
        """The field and why, if upstream, credential and known_hosts cannot work together.

        These are the gate's own rules (``bottle_gitgate_sidecar.gitgate``), checked
        when the profile is read instead of once the sidecar has started: a
        token goes in an HTTPS header only, a key goes to ssh, the gate reads a
        local upstream directly, and it pins ``known_hosts`` only for the ssh
        it runs with the key (without one, the sidecar's ssh has no way in).
        Only the merged profile is checked: a child may set what its parent lacks.
        """
        upstream = self.upstream or "the repository under work (`git.upstream` is not set)"
        transport = upstream_transport(self.upstream) if self.upstream else "local"
        kind = self.credential.kind if self.credential else None
        if kind and transport == "local":
            return "git.credential", f"upstream is {upstream}, a local path, which the gate reads with no credential"
        if kind == "token" and transport != "https":
            return "git.credential.kind", (
                f'"token" is sent in an HTTPS header, but upstream {upstream} is not https://; '
                'an ssh upstream takes { kind = "ssh_key", file = "~/.ssh/KEY" }'
            )
        if kind == "ssh_key" and transport != "ssh":
            return "git.credential.kind", (
                f'"ssh_key" needs an ssh upstream (ssh://... or user@host:path), but upstream is {upstream}; '
                'an https:// upstream takes { kind = "token", env = "VARIABLE" }'
            )
        if transport == "ssh" and kind is None:
            return "git.credential", (
                f'the ssh upstream {upstream} needs credential = {{ kind = "ssh_key", file = "~/.ssh/KEY" }}: '
                "the sidecar holds no other SSH key"
            )
        if self.known_hosts is not None and kind != "ssh_key":
            return "git.known_hosts", (
                f"it pins the SSH host key of an ssh upstream reached with an ssh_key credential; upstream is {upstream}"
            )
        return None

    @field_validator("push_refs", "fetch_refs", "protected")
    @classmethod
    def _full_ref_names(cls, patterns: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        # The gate matches full ref names; it would refuse "bottle/*" only once the sidecar starts.
        head = info.field_name == "fetch_refs"  # where HEAD (upstream's default branch) may stand too
        for pattern in patterns or ():
            if not pattern.startswith("refs/") and not (head and pattern == "HEAD"):
                raise ValueError(f"{pattern!r} is not a full ref name: patterns start with refs/ (refs/heads/bottle/*)"
                                 + (", or are HEAD" if head else ""))
        return patterns


class SuperviseConfig(BaseModel):
    """``[supervise]``: the channel through which the agent asks and the operator answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False
    answer_timeout: StrictInt = Field(600, gt=0, le=86400, description="seconds a request waits for an answer")
    deny: tuple[dict, ...] = Field((), description='PreToolUse deny rules: {tool, pattern, field, reason}')

    @field_validator("deny")
    @classmethod
    def _rules(cls, rules: tuple[dict, ...]) -> tuple[dict, ...]:
        from bottle_supervise_sidecar.deny_rules import DenyRuleError, parse_rules

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
    # Limits: unset, bottle's defaults for the host apply (bottle.limits); "unlimited" lifts one.
    cpus: Cpus | None = None
    memory: Size | None = Field(None, description="RAM, swap included, and files kept in memory (tmpfs)")
    pids: Pids | None = Field(None, description="processes and threads")
    disk: Size | None = Field(None, description="what the agent may write")
    env: EnvMap = Field(default_factory=dict)
    egress: EgressConfig = EgressConfig()
    credentials: tuple[CredentialRoute, ...] = ()
    git: GitConfig | None = None
    supervise: SuperviseConfig | None = None

    @field_validator("credentials")
    @classmethod
    def _one_route_per_place(cls, routes: tuple[CredentialRoute, ...]) -> tuple[CredentialRoute, ...]:
        # The sidecar strips the client's credential headers and injects one; two would fail it at start.
        places = [f"{route.host.lower()}:{route.port}" for route in routes]
        twice = sorted({place for place in places if places.count(place) > 1})
        if twice:
            raise ValueError(f"more than one route for {', '.join(twice)}: the sidecar injects one credential "
                             "per host and port")
        return routes


class Profile(BaseModel):
    """A resolved profile: the ``extends`` chain merged, with the files it came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    files: tuple[Path, ...] = ()
    backend: str | None = None
    image: str | None = None
    cpus: Cpus | None = None
    memory: Size | None = None
    pids: Pids | None = None
    disk: Size | None = None
    env: dict[str, str] = Field(default_factory=dict)
    egress: EgressConfig = EgressConfig()
    credentials: tuple[CredentialRoute, ...] = ()
    git: GitConfig = GitConfig()
    supervise: SuperviseConfig = SuperviseConfig()
    notes: tuple[str, ...] = Field((), description="how the profile was resolved, for the plan to show")


ANTHROPIC_API_HOST = "api.anthropic.com"

#: What the built-in ``default`` profile injects into the Anthropic API's
#: requests: the first of these whose variable is set on the host. Claude Code
#: sends a subscription token (``claude setup-token``) found in its own
#: ``CLAUDE_CODE_OAUTH_TOKEN`` as a bearer token.
BUILTIN_CREDENTIALS = (
    CredentialRoute(host=ANTHROPIC_API_HOST, header="x-api-key", env="ANTHROPIC_API_KEY"),
    CredentialRoute(host=ANTHROPIC_API_HOST, header="authorization", scheme="Bearer", env="CLAUDE_CODE_OAUTH_TOKEN"),
)


def builtin_default(path: Path) -> Profile:
    """The profile ``default`` when *path* (its file) does not exist: Claude Code, reaching
    the Anthropic API with the credential the user has, and nothing else.

    Which credential is decided now, at plan time, so that a run that could
    only end in Claude Code's "Not logged in" stops before anything starts.
    """
    names = [route.env for route in BUILTIN_CREDENTIALS]
    found = [route for route in BUILTIN_CREDENTIALS if os.environ.get(route.env)]
    if not found:
        raise UsageError(
            f"No credential for the Anthropic API: the built-in bottle profile 'default' (there is no {path}) "
            f"injects {names[0]} (an API key) or {names[1]} (a Claude subscription token, made by "
            f"`claude setup-token`), and neither is set in this environment. Set one, or write {path} "
            "with a `[[credentials]]` route for the credential to use."
        )
    chosen, *unused = found
    notes = [f"built-in profile 'default': {ANTHROPIC_API_HOST} with {chosen.env}"]
    notes += [f"{route.env} is set too and not used ({chosen.env} comes first)" for route in unused]
    return Profile(
        name="default", egress=EgressConfig(allow=(ANTHROPIC_API_HOST,)), credentials=(chosen,), notes=tuple(notes)
    )


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

    The profile ``default`` may be absent: it is then :func:`builtin_default`.
    Any other missing profile is an error, prefixed by
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
                return builtin_default(path)
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
    on_secret: dict[str, str] = {}
    exempt_detectors: dict[str, None] = {}
    exempt_values: dict[str, None] = {}
    routes: dict[tuple[str, int], CredentialRoute] = {}  # by host and port: a child's route replaces its parent's
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
        on_secret = _then(on_secret, layer.egress.on_secret)
        exempt_detectors.update(dict.fromkeys(layer.egress.secret_exempt.detectors))
        exempt_values.update(dict.fromkeys(layer.egress.secret_exempt.values))
        routes.update({(route.host.lower(), route.port): route for route in layer.credentials})
    git_config = GitConfig(**git)
    problem = git_config.pairing_problem()
    if problem is not None:
        files = ", ".join(str(path) for path, layer in chain if layer.git is not None)
        raise UsageError(f"{files}: field `{problem[0]}`: {problem[1]}.")
    return Profile(
        name=name,
        files=tuple(path for path, _ in chain),
        egress=EgressConfig(
            allow=tuple(allow), secret_patterns=tuple(patterns), trust=tuple(trust), on_secret=on_secret,
            secret_exempt=SecretExempt(detectors=tuple(exempt_detectors), values=tuple(exempt_values)),
        ),
        credentials=tuple(routes.values()),
        git=git_config,
        supervise=SuperviseConfig(**supervise),
        **merged,
    )
