"""Agent files: Markdown with YAML front matter, the shape of the agent CLIs' own subagent files.

The body is the system prompt; the front matter names the bottle profile,
skills, model and plain env. Agents live in the repo (``.bottle/agents/``) or
in the user's config dir; a name found in both is an error, so that a repo can
never silently shadow the user's own agent (or the reverse).
"""

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from bottle.errors import UsageError
from bottle.manifests.common import NAME_PATTERN, EnvMap, check_name, read_text, validate


class AgentFrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    bottle: str = Field("default", pattern=NAME_PATTERN, description="bottle profile name")
    skills: tuple[str, ...] = ()
    model: str | None = None
    branch: str | None = Field(None, pattern=r"^[A-Za-z0-9._/-]+$", description="branch the agent starts from")
    env: EnvMap = Field(default_factory=dict)


class Agent(AgentFrontMatter):
    """A validated agent: its front matter plus where it came from and its prompt.

    Frozen: planning hooks see it and must not change what the plan is built from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    prompt: str


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
        front = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise UsageError(f"{path}: the front matter is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    meta = validate(AgentFrontMatter, front, path, "agent front matter")
    if meta.name != path.stem:
        raise UsageError(f"{path}: field `name`: expected {path.stem!r} (the file's name), got {meta.name!r}.")
    return Agent(**meta.model_dump(), path=path, prompt="".join(lines[end + 1 :]).strip())


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
