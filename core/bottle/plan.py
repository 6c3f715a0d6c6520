"""The plan: every decision resolved before any side effect.

A :class:`Plan` is immutable and serialisable (``bottle run --dry-run --json``
prints it); launch only executes one. Plugins add to it through the planning
hooks, which see a :class:`PlanContext`.
"""

from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from bottle.manifests.agent import Agent
from bottle.manifests.profile import GitCredential, GitIdentity, Profile, SecretExempt, SecretMode
from bottle.settings import Settings


#: A mapping nobody can change after validation: provision hooks see the plan
#: and must not be able to alter what launch runs (``env``, say).
ReadOnlyMap = Annotated[
    Mapping[str, str],
    AfterValidator(lambda value: MappingProxyType(dict(value))),
    PlainSerializer(dict, return_type=dict),
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanFile(Frozen):
    """A host file or directory copied into the guest, or a small file made from ``content``.

    Owned by the guest user unless ``root_owned`` (system files such as trust
    stores, which the agent must not be able to rewrite). Made files are
    private to their owner (0600).
    """

    host_path: Path | None = None
    content: str | None = Field(None, description="the file's text, when it has no host file")
    guest_path: str
    provider: str = Field(description="the plugin that asked for it")
    root_owned: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "PlanFile":
        if (self.host_path is None) == (self.content is None):
            raise ValueError("a plan file has either a host_path or a content")
        return self


class AgentCommand(Frozen):
    """How the agent starts: the answer of the ``bottle_agent_command`` hook.

    The core knows no agent by name; it appends the plugins' and the user's
    arguments to ``argv``, and layers the agent's, the profile's and the
    plugins' environment over ``env``.
    """

    argv: tuple[str, ...] = Field(min_length=1)
    env: ReadOnlyMap = Field(default_factory=dict, description="the lowest layer of the agent's environment")


class CredentialPlan(Frozen):
    """A credential route: the sidecar injects the host's ``env`` value for ``host``:``port``, under ``path``.

    Only the name and the placeholder are in the plan; the value is read at
    launch and handed to the sidecar alone.
    """

    host: str
    port: int = 443
    path: str = Field("", description="a path prefix; empty: every path")
    header: str
    scheme: str
    env: str
    placeholder: str
    on_secret: SecretMode | None = Field(None, description="this host's mode for secrets; None: egress.on_secret's")


class EgressPlan(Frozen):
    allow: tuple[str, ...]
    secret_patterns: tuple[str, ...]
    credentials: tuple[CredentialPlan, ...]
    trust: tuple[Path, ...] = Field(description="extra CA files the sidecar trusts upstream")
    on_secret: ReadOnlyMap = Field(
        default_factory=dict, description='host rule -> "block" or "redact"; the last match decides, none: block'
    )
    secret_exempt: SecretExempt = SecretExempt()


class GitPlan(Frozen):
    """The git gate: what the agent clones from and pushes to, and what reaches upstream."""

    upstream: str = Field(description="the real remote, as the gate sees it")
    local_upstream: Path | None = Field(
        None, description="host path of a local upstream, which the host serves to the gate (bottle_git.upstream_relay)"
    )
    push_refs: tuple[str, ...] = Field(description="the profile's, {slug} replaced")
    fetch_refs: tuple[str, ...] = Field(description="what the gate mirrors besides push_refs; HEAD: upstream's default")
    protected: tuple[str, ...] | None = Field(description="None: upstream's default branch")
    allow_force: bool
    max_push_mb: int
    max_push_refs: int
    identity: GitIdentity
    credential: GitCredential | None = Field(None, description="where the gate's credential is read from")
    known_hosts: str | None = None
    start_from: str | None = Field(None, description="branch to start from (default: upstream's default)")
    work_branch: str = Field(description="the branch the agent works on")
    gate_url: str


class SupervisePlan(Frozen):
    """The supervise channel: MCP tools for asking, hooks that report and may deny."""

    answer_timeout: int
    deny: tuple[dict, ...]
    url: str = Field(description="the supervise server as the guest reaches it")


class SidecarPlan(Frozen):
    """The sidecar: where the agent finds it and what it trusts."""

    image: str
    hostname: str = "sidecar"
    proxy_port: int = 3128
    gate_port: int = 8418
    supervise_port: int = 8765
    ca_cert: Path = Field(description="host path of the bottle CA's certificate (public), written at launch")
    audit_max_mb: int = Field(description="the audit log's budget in MiB (the `audit_max_mb` setting)")

    @property
    def proxy_url(self) -> str:
        return f"http://{self.hostname}:{self.proxy_port}"


class GuestLayout(Frozen):
    """Where things are inside the guest."""

    user: str
    uid: int
    home: str
    workdir: str
    skills_dir: str
    prompt_path: str


class Resources(Frozen):
    """The limits the backend applies (``bottle.limits`` decides them); None: none, the profile lifted it."""

    cpus: float | None = None
    memory: str | None = Field(None, description="also the most it may swap to: none beyond it")
    pids: int | None = None
    disk: str | None = Field(None, description="what the agent may write (see Backend.disk_bound)")


class PlanContext(Frozen):
    """What the planning hooks see: the inputs of the plan, already validated."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    slug: str
    agent: Agent
    profile: Profile
    settings: Settings
    project_dir: Path
    state_dir: Path
    prompt_file: Path
    guest: GuestLayout
    sidecar: SidecarPlan
    egress: EgressPlan
    git: GitPlan | None = None
    supervise: SupervisePlan | None = None


class Plan(Frozen):
    """One bottle, fully decided. ``bottle run --dry-run`` prints this."""

    slug: str
    agent: str
    agent_file: Path
    profile: str
    profile_files: tuple[Path, ...]
    notes: tuple[str, ...] = Field((), description="what the user should know of how this plan was decided")
    backend: str
    image: str
    state_dir: Path
    prompt_file: Path
    system_prompt: str
    guest: GuestLayout
    resources: Resources
    files: tuple[PlanFile, ...]
    egress: EgressPlan
    sidecar: SidecarPlan
    git: GitPlan | None = None
    supervise: SupervisePlan | None = None
    claude_argv: tuple[str, ...]
    env: ReadOnlyMap
    headless: bool
    labels: ReadOnlyMap
