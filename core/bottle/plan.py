"""The plan: every decision resolved before any side effect.

A :class:`Plan` is immutable and serialisable (``bottle run --dry-run --json``
prints it); launch only executes one. Plugins add to it through the planning
hooks, which see a :class:`PlanContext`.
"""

import importlib
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Mapping, TypeVar

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SerializeAsAny, model_validator,
)

from bottle.manifests.agent import Agent
from bottle.manifests.profile import Profile
from bottle.settings import Settings
from bottle.sidecar.service import SidecarService


#: A mapping nobody can change after validation: provision hooks see the plan
#: and must not be able to alter what launch runs (``env``, say).
ReadOnlyMap = Annotated[
    Mapping[str, str],
    AfterValidator(lambda value: MappingProxyType(dict(value))),
    PlainSerializer(dict, return_type=dict),
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanSection(Frozen):
    """A plugin's part of the plan (``bottle_plan_section``), under its ``SECTION`` key in ``Plan.sections``.

    Subclass it with ``SECTION = "git"`` and the fields your launch-time hooks
    need; it is frozen and serialised with the plan, with the class that reads
    it back (``KIND_FIELD``: ``module:Class``), so that ``plan.json`` reads back
    as the same classes in a process that has not planned.
    """

    SECTION: ClassVar[str]

    def describe(self) -> list[tuple[str, str]]:
        """The section as ``bottle run --dry-run`` prints it: (label, text) rows. Override to say it better."""
        return [(self.SECTION, self.model_dump_json(exclude_defaults=True))]

    @classmethod
    def from_plan_json(cls: type["S"], plan: Mapping[str, Any]) -> "S | None":
        """This section of a ``plan.json`` read as JSON (None when it has none): without reading the others,
        whose plugins need not be loaded here."""
        section = plan.get("sections", {}).get(cls.SECTION)
        return None if section is None else cls.model_validate({k: v for k, v in section.items() if k != KIND_FIELD})


S = TypeVar("S", bound=PlanSection)
KIND_FIELD = "kind"


def _section_kind(key: str, kind: Any) -> type[PlanSection]:
    module, _, name = str(kind).partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"plan section {key!r}: its class {kind!r} cannot be found (is its plugin installed?)") from None
    if not (isinstance(found, type) and issubclass(found, PlanSection) and found.SECTION == key):
        raise ValueError(f"plan section {key!r}: {kind!r} is not the PlanSection whose SECTION is {key!r}")
    return found


def _sections(value: Any) -> Any:
    """A mapping of section key to a section, or to its fields (read back from JSON) as the class they name."""
    if not isinstance(value, Mapping):
        return value
    sections = {}
    for key, section in value.items():
        if isinstance(section, Mapping):
            fields = dict(section)
            section = _section_kind(key, fields.pop(KIND_FIELD, None)).model_validate(fields)
        elif not isinstance(section, PlanSection) or section.SECTION != key:
            raise ValueError(f"plan section {key!r}: expected the PlanSection whose SECTION is {key!r}")
        sections[key] = section
    return MappingProxyType(sections)


def _dump_sections(value: Mapping[str, PlanSection]) -> dict:
    return {key: {KIND_FIELD: f"{type(section).__module__}:{type(section).__qualname__}",
                  **section.model_dump(mode="json")} for key, section in value.items()}


Sections = Annotated[
    Mapping[str, SerializeAsAny[PlanSection]], BeforeValidator(_sections), PlainSerializer(_dump_sections),
]


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
    skills_dir: str | None = Field(None, description="where the agent reads skills, under its home; None: it has none")


class SidecarPlan(Frozen):
    """The sidecar: where the agent finds it and the services the plugins run in it."""

    image: str
    hostname: str = "sidecar"
    audit_max_mb: int = Field(description="the audit log's budget in MiB (the `audit_max_mb` setting)")
    services: tuple[SidecarService, ...] = ()

    def url(self, port: int) -> str:
        """Where the guest reaches the sidecar's service on *port*."""
        return f"http://{self.hostname}:{port}"


class GuestLayout(Frozen):
    """Where things are inside the guest."""

    user: str
    uid: int
    home: str
    workdir: str
    skills_dir: str | None = Field(None, description="the guest_skills_dir setting, else the agent's (AgentCommand)")
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
    repo: Path | None = Field(None, description="the repository under work that --repo named")
    sections: Sections = Field(default_factory=dict, description="each plugin's section (bottle_plan_section)")
    previous: "Plan | None" = Field(None, description="`bottle resume`: the bottle's last run's plan; the "
                                    "agent goes on where it stopped, and what changed live then stays")

    def section(self, kind: type[S]) -> S | None:
        """This bottle's section of *kind*, or None when it has none."""
        return self.sections.get(kind.SECTION)

    @property
    def resume(self) -> bool:
        return self.previous is not None


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
    runtime: str | None = Field(None, description='the profile\'s `runtime` ("runc", "runsc", "auto"), else the '
                                "setting's; None: the backend's default")
    files: tuple[PlanFile, ...]
    sidecar: SidecarPlan
    sections: Sections = Field(default_factory=dict, description="each plugin's section (bottle_plan_section)")
    agent_argv: tuple[str, ...]
    env: ReadOnlyMap
    headless: bool
    resume: bool = Field(False, description="a `bottle resume` of a stopped bottle: its volumes hold its work")
    publish: tuple[tuple[int, int], ...] = Field((), description="(host port on 127.0.0.1, guest port): --publish")
    labels: ReadOnlyMap

    def section(self, kind: type[S]) -> S | None:
        """This bottle's section of *kind*, or None when it has none."""
        return self.sections.get(kind.SECTION)


PlanContext.model_rebuild()  # its `previous` is a Plan
