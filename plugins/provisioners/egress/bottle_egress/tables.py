"""The egress plugin's profile tables: ``[egress]`` (what the agent may reach) and ``[[credentials]]``
(what the sidecar injects where), registered through ``bottle_register_profile_tables``.

``extends`` layers add up: a child adds allow rules, patterns, trusted CAs
and exemptions to its parents'; ``on_secret`` rules follow the parents' (the
last match decides); a child's credential route replaces its parent's for
the same host and port.
"""

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from bottle.manifests.tables import ProfileTable, by_key

#: The Anthropic Messages API: its requests redact secrets by default (see ``EgressConfig.on_secret``).
ANTHROPIC_API_HOST = "api.anthropic.com"


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


def merge_egress(layers: list[EgressConfig]) -> EgressConfig:
    """Parents first: rules, patterns, CAs and exemptions add up, in order and once each."""

    def union(values) -> tuple:
        return tuple(dict.fromkeys(item for value in values for item in value))

    on_secret: dict[str, str] = {}
    for layer in layers:
        on_secret = _then(on_secret, layer.on_secret)
    return EgressConfig(
        allow=union(layer.allow for layer in layers),
        secret_patterns=union(layer.secret_patterns for layer in layers),
        trust=union(layer.trust for layer in layers),
        on_secret=on_secret,
        secret_exempt=SecretExempt(detectors=union(layer.secret_exempt.detectors for layer in layers),
                                   values=union(layer.secret_exempt.values for layer in layers)),
    )


def _one_route_per_place(routes: tuple[CredentialRoute, ...]) -> tuple[str, str] | None:
    # The sidecar strips the client's credential headers and injects one; two would fail it at start.
    places = [f"{route.host.lower()}:{route.port}" for route in routes]
    twice = sorted({place for place in places if places.count(place) > 1})
    if twice:
        return "credentials", (f"more than one route for {', '.join(twice)}: the sidecar injects one credential "
                               "per host and port")
    return None


class BudgetConfig(BaseModel):
    """``[budget]``: what the bottle may spend on the Messages API, counted by the sidecar from the replies'
    usage; past it, the next request is refused until the operator raises it (``bottle answer``, or
    ``bottle egress budget``). A child's fields override its parent's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: StrictInt | None = Field(None, ge=1, description="input, output and cache tokens, all counted")
    max_usd: float | None = Field(None, gt=0, description="dollars, estimated from the `model_prices` setting")
    per: Literal["bottle", "run"] = Field("bottle", description='"bottle": all its runs (resumed too); '
                                          '"run": each run from its start')


def _a_limit(budget: BudgetConfig) -> tuple[str, str] | None:
    if budget.max_tokens is None and budget.max_usd is None:
        return "budget", "a budget needs max_tokens, max_usd or both"
    return None


TABLES = (
    ProfileTable(key="egress", model=EgressConfig, merge=merge_egress, default=EgressConfig),
    ProfileTable(key="budget", model=BudgetConfig, check=_a_limit),
    ProfileTable(key="credentials", model=CredentialRoute, many=True, default=tuple, check_each=_one_route_per_place,
                 merge=by_key(lambda route: (route.host.lower(), route.port))),
)
