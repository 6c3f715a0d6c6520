"""Provisioner ``skills``: each skill the agent names is copied to the guest's skills dir.

A skill is a directory holding ``SKILL.md``, found in the repo's
``.bottle/skills/`` or the user's config dir (``skills/``). Everything that
could go wrong is checked here, at plan time, before anything starts: an
unknown skill, one without ``SKILL.md``, a name that could escape the skills
dir, a skill found in both places, and symlinks that point outside the skill
(they would copy host files the user never meant to share), dangle or loop
(the copy, which follows links, would fail at launch).
"""

from pathlib import Path

from bottle import hookimpl, paths
from bottle.errors import UsageError

NAME = "skills"


def skill_dirs(project_dir: Path, config_dir: Path) -> list[Path]:
    return [project_dir / ".bottle" / "skills", config_dir / "skills"]


def _check_links(skill: Path) -> None:
    """Walk the skill as the tar will (symlinks followed) and stop at what it could not copy.

    A link must resolve (a dangling one would fail the copy at launch), stay
    inside the skill, and not point at a directory that contains it (following
    it would never end).
    """
    root = skill.resolve()

    def walk(directory: Path, ancestors: tuple[Path, ...]) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError as err:
            raise UsageError(f"Skill directory {directory} cannot be read: {err}") from None
        for path in entries:
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    raise UsageError(
                        f"Skill file {path} is a broken symlink (its target is missing or it loops): "
                        "fix or remove it."
                    ) from None
                if target != root and root not in target.parents:
                    raise UsageError(
                        f"Skill file {path} is a symlink to {target}, outside the skill directory {skill}: "
                        "copy the file into the skill instead."
                    )
                if target in ancestors:
                    raise UsageError(
                        f"Skill file {path} is a symlink to {target}, a directory that contains it: "
                        "copying the skill would never end."
                    )
            if path.is_dir():
                walk(path, (*ancestors, path.resolve()))

    walk(skill, (root,))


def resolve_skill(name: str, agent_file: Path, dirs: list[Path]) -> Path:
    from bottle.manifests.common import check_name  # pydantic: not for `bottle --help`

    try:
        check_name(name, "skill")
    except UsageError as err:
        raise UsageError(f"{agent_file}: field `skills`: {err}") from None
    found = [d / name for d in dirs if (d / name).is_dir()]
    if not found:
        raise UsageError(
            f"{agent_file}: field `skills`: no skill {name!r} (looked for a directory {name}/ in "
            f"{dirs[0]} and {dirs[1]})."
        )
    if len(found) > 1:
        raise UsageError(f"{agent_file}: field `skills`: skill {name!r} is defined twice: {found[0]} and {found[1]}.")
    skill = found[0]
    if not (skill / "SKILL.md").is_file():
        raise UsageError(f"{agent_file}: field `skills`: skill {name!r} ({skill}) has no SKILL.md.")
    _check_links(skill)
    return skill


@hookimpl
def bottle_plan_files(ctx):
    from bottle.plan import PlanFile  # pydantic: not for `bottle --help`

    if ctx.agent.skills and ctx.guest.skills_dir is None:
        raise UsageError(f"{ctx.agent.path}: field `skills`: this agent's command reads no skills; set the "
                         "guest_skills_dir setting to where it should find them.")
    dirs = skill_dirs(ctx.project_dir, paths.config_dir())
    return [
        PlanFile(
            host_path=resolve_skill(name, ctx.agent.path, dirs),
            guest_path=f"{ctx.guest.skills_dir}/{name}",
            provider=NAME,
        )
        for name in ctx.agent.skills
    ]
