"""``bottle run``: plan, then launch (or print the plan with --dry-run)."""

import sys
from pathlib import Path
from typing import List, Optional

import typer

PUBLISH = typer.Option(None, "--publish", help="Reach the agent's server on PORT from this machine's 127.0.0.1:PORT "
                       "(HOST_PORT:PORT for another number), for the run; repeat for more. The server must listen "
                       "on 0.0.0.0 in the bottle.", metavar="PORT")


def run(
    agent: str = typer.Argument(..., help="Agent name (.bottle/agents/NAME.md or the config dir's agents/) or path to an agent .md file."),
    claude_args: Optional[List[str]] = typer.Argument(None, help="Extra arguments for the agent's command, after `--`.", show_default=False),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Run headless with this prompt (no TTY needed); the agent's exit code becomes bottle's."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="Backend to run on (default: the profile's, else the `backend` setting)."),
    image: Optional[str] = typer.Option(None, "--image", help="Agent image (overrides the `image` setting)."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Git repository the bottle works on (default: the current directory, if it is one); cloned through the sidecar."),
    name: Optional[str] = typer.Option(None, "--name", help="The bottle's name (its slug), instead of AGENT-xxxxxx: for `bottle resume NAME`."),
    publish: Optional[List[str]] = PUBLISH,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop: nothing is created."),
    timings: bool = typer.Option(False, "--timings", help="After the run, print on stderr when each step started "
                                 "(from the process's start: the first is the imports and the plan) and how long "
                                 "it took (the state dir keeps timings.json)."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON. With --timings: "
                                 "print the timings as JSON, on stderr."),
) -> None:
    """Run an AGENT in a new bottle. When the agent exits the bottle stops: what runs goes, the agent's home
    and workdir stay (`bottle resume SLUG` goes on, `bottle rm SLUG` deletes them).

    Example: bottle run reviewer --prompt "review the last commit" -- --max-turns 5
    """
    import time

    from bottle.cli.common import settings_and_plugins
    from bottle.prepare import build_plan
    from bottle.sessions import Inputs, check_name

    settings, plugins = settings_and_plugins(image=image)
    plan = build_plan(
        agent, settings=settings, plugins=plugins, headless_prompt=prompt, backend=backend,
        agent_args=tuple(claude_args or ()), repo=repo, slug=name and check_name(name), publish=published(publish),
    )
    inputs = Inputs(agent=str(plan.agent_file), repo=repo and str(repo.resolve()), backend=backend, image=image,
                    created=time.time())
    start(plan, plugins, inputs=inputs, dry_run=dry_run, as_json=as_json, timings=timings)


def published(specs: list[str] | None) -> tuple[tuple[int, int], ...]:
    from bottle.ports import Published

    return tuple((p.host, p.guest) for p in (Published.parse(spec, "--publish") for spec in specs or ()))


def start(plan, plugins, *, inputs=None, dry_run: bool, as_json: bool, timings: bool) -> None:
    """Print *plan* (``--dry-run``) or launch it, then exit with the agent's code: ``run`` and ``resume``."""
    from bottle.cli.common import print_json
    from bottle.launch import Terminated, launch
    from bottle.timings import Timings

    if dry_run:
        if as_json:
            print_json(plan.model_dump(mode="json"))
        else:
            from bottle.cli.show import print_plan

            print_plan(plan)
        return
    for note in plan.notes:
        print(f"bottle: {note}", file=sys.stderr)
    recorded = Timings.since_process_start("before the launch: interpreter, imports, plan")
    try:
        code = launch(plan, plugins, recorded, inputs)
    except KeyboardInterrupt:
        code = 130
    except Terminated as stop:
        code = stop.exit_code
    finally:
        if timings:
            _print_timings(recorded, as_json)
    raise typer.Exit(code)


def _print_timings(recorded, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(recorded.as_dict()), file=sys.stderr)
    else:
        for line in recorded.lines():
            print(f"bottle: {line}", file=sys.stderr)
