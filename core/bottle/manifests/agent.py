"""Agent files: Markdown with YAML front matter, the shape of the agent CLIs' own subagent files.

The body is the system prompt; the front matter names the bottle profile,
skills, model and plain env. Agents live in the repo (``.bottle/agents/``) or
in the user's config dir; a name found in both is an error, so that a repo can
never silently shadow the user's own agent (or the reverse).

An agent CLI's own subagent file runs as it is: of its fields, ``name``,
``description``, ``model`` and ``skills`` are bottle's too; the others
(:data:`FOREIGN_FIELDS`) are ignored, each with a note in the plan. A field that
is in neither list is refused, naming the file and the field: a typo such as
``modle`` must not pass silently.
"""

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate

_BOUNDARY = "the bottle, not the agent file, bounds what the agent may do"
#: Fields the agent CLIs' own subagent files carry that bottle does not use, and why each has no
#: effect in a bottle. None is passed on to the agent: they configure a subagent that a running
#: session delegates to, while a bottle starts its agent as the session itself; and an agent file
#: comes with the repository under work, so none of it may add tools, servers or hooks. Each one
#: present becomes a note (:attr:`Agent.notes`), whatever its value.
FOREIGN_FIELDS: dict[str, str] = {
    "tools": f"the agent has its tools; {_BOUNDARY}",
    "disallowedTools": f"the agent has its tools; {_BOUNDARY}",
    "permissionMode": _BOUNDARY,
    "maxTurns": "bottle sets no limit on the agent's turns",
    "mcpServers": "MCP servers come from bottle's plugins, never from an agent file",
    "hooks": "hooks come from bottle's plugins, never from an agent file",
    "memory": "bottle sets up no persistent memory for the agent",
    "background": "the agent is the bottle's session, not a task delegated in the background",
    "effort": "bottle sets no effort level (pass the agent's own flag after `--`)",
    "isolation": "the bottle is the agent's isolation",
    "initialPrompt": "give the first prompt with `bottle run AGENT -p PROMPT`",
    "color": "bottle shows no agent colours",
}
#: The tags YAML gives a plain scalar read as a number, a boolean or a date: in ``env`` such a
#: value keeps the text as written (``PORT: 8080`` is "8080", ``DEBUG: true`` is "true",
#: ``VERSION: 1.10`` is "1.10", not the float's "1.1"), the string a shell line ``PORT=8080`` gives.
_AS_WRITTEN = {f"tag:yaml.org,2002:{kind}" for kind in ("int", "float", "bool", "timestamp")}
_STR = "tag:yaml.org,2002:str"


class AgentFrontMatter(BaseModel):
    """The fields bottle uses. Shared with the agent CLIs' subagent files: ``name``, ``description``,
    ``model`` (``inherit`` is no model: the agent's own default) and ``skills`` (a list, or names
    separated by commas)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", description="what the agent is for; kept with the agent, not given to it")
    bottle: str = Field("default", pattern=NAME_PATTERN, description="bottle profile name")
    skills: tuple[str, ...] = Field((), description="skills installed for the agent")
    model: str | None = Field(None, description="the model the agent runs; None: the agent's default")
    branch: str | None = Field(None, pattern=r"^[A-Za-z0-9._/-]+$", description="branch the agent starts from")
    env: EnvMap = Field(default_factory=dict)

    @field_validator("skills", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(name.strip() for name in value.split(",") if name.strip()) if isinstance(value, str) else value

    @field_validator("model")
    @classmethod
    def _inherit_is_the_default(cls, value: str | None) -> str | None:
        return None if value == "inherit" else value


class Agent(AgentFrontMatter):
    """A validated agent: its front matter plus where it came from and its prompt.

    Frozen: planning hooks see it and must not change what the plan is built from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    prompt: str
    notes: tuple[str, ...] = Field((), description="the fields the file has that have no effect, and why")


def _load_front_matter(text: str) -> object:
    """The front matter's YAML, with the numbers, booleans and dates of ``env`` kept as written."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "env" and isinstance(value, yaml.MappingNode):
                for _, item in value.value:
                    if isinstance(item, yaml.ScalarNode) and item.tag in _AS_WRITTEN:
                        item.tag = _STR
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_agent_file(path: Path) -> Agent:
    text = read_text(path)
    if not text.startswith("---"):
        raise UsageError(
            f"{path}: expected YAML front matter between '---' lines at the top of the file "
            "(name, description, bottle, skills, model, env)."
        )
    lines = text.splitlines(keepends=True)
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.rstrip() == "---")
    except StopIteration:
        raise UsageError(f"{path}: the front matter has no closing '---' line.") from None
    try:
        front = _load_front_matter("".join(lines[1:end]))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise UsageError(f"{path}: the front matter is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    ignored = [key for key in front if key in FOREIGN_FIELDS] if isinstance(front, dict) else []
    if ignored:
        front = {key: value for key, value in front.items() if key not in FOREIGN_FIELDS}
    notes = tuple(f"{path.name}: field `{key}` has no effect in a bottle: {FOREIGN_FIELDS[key]}." for key in ignored)
    meta = validate(AgentFrontMatter, front, path, "agent front matter")
    if meta.name != path.stem:
        raise UsageError(f"{path}: field `name`: expected {path.stem!r} (the file's name), got {meta.name!r}.")
    return Agent(**meta.model_dump(), path=path, prompt="".join(lines[end + 1 :]).strip(), notes=notes)


def agent_dirs(project_dir: Path, config_dir: Path) -> list[Path]:
    return [project_dir / ".bottle" / "agents", config_dir / "agents"]


def find_agent(ref: str, project_dir: Path, config_dir: Path) -> Agent:
    """Resolve ``bottle run AGENT``: a path to an ``.md`` file, or a name."""
    if ref.endswith(".md") or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise UsageError(f"Agent file {path} does not exist.")
        return parse_agent_file(path.resolve())
    check_name(ref, "agent")
    dirs = agent_dirs(project_dir, config_dir)
    found = [d / f"{ref}.md" for d in dirs if (d / f"{ref}.md").is_file()]
    if len(found) > 1:
        raise UsageError(
            f"Agent {ref!r} is defined twice: {found[0]} and {found[1]}. "
            "Rename or remove one so that it is clear which runs."
        )
    if not found:
        known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.md")})
        hint = f" Known agents: {', '.join(known)}." if known else ""
        raise UsageError(f"No agent {ref!r}: looked for {ref}.md in {dirs[0]} and {dirs[1]}.{hint}")
    return parse_agent_file(found[0])
