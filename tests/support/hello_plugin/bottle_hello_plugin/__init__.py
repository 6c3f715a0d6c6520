"""The worked example of a third-party bottle plugin: one small capability through every kind of hook.

A profile that says ::

    [hello]
    greeting = "Hello from the sidecar."

gets a tiny HTTP service in its bottle's sidecar that answers the guest with
that greeting. Nothing under ``core/`` knows of it: the plugin is installed
like any other, as an entry point in the ``bottle`` group (here a hand-written
``bottle_hello_plugin-0.1.dist-info`` beside this package, which the tests put
on ``PYTHONPATH``), and blocked like any other, by its entry-point name
(``BOTTLE_DISABLE_PLUGINS=hello``); a profile with ``[hello]`` is then refused,
as any unknown field is.

Each hook, in the order bottle calls them:

* ``bottle_register_profile_tables``: declares ``[hello]`` (:class:`~.models.HelloConfig`);
* ``bottle_sidecar_image_parts``: asks ``bottle image build`` to copy the
  service's package, ``bottle_hello_sidecar``, into the sidecar image;
* ``bottle_register_commands``: adds ``bottle hello``;
* ``bottle_plan_section``: turns the merged table into the plan's ``hello``
  section (:class:`~.models.HelloPlan`), or nothing when the profile has none;
* ``bottle_sidecar_services``: runs the service in the sidecar, on :data:`~.models.PORT`;
* ``bottle_sidecar_prepare``: writes the greeting into the bottle's state dir,
  where the service reads it;
* ``bottle_provision``: asks the service from inside the guest, with the
  agent's own environment, and stops the launch if it does not answer.

Only ``bottle_plan_section`` reads the profile: the later hooks read the plan
(``plan.section(HelloPlan)``), so that what runs is what ``bottle run --dry-run`` showed.
"""

import json

import typer

from bottle import hookimpl

#: The greeting, in the bottle's state dir; the service reads it at ``STATE_MOUNT/GREETING_FILE``.
GREETING_FILE = "hello.txt"
#: What the guest heard from the service, in the bottle's state dir (kept after the bottle): ``bottle hello`` shows it.
HEARD_FILE = "hello-heard.txt"
READY = "bottle-hello: listening"


# -- registration ---------------------------------------------------------------


@hookimpl
def bottle_register_profile_tables(register):
    from bottle.manifests.tables import ProfileTable

    from bottle_hello_plugin.models import HelloConfig

    register(ProfileTable(key="hello", model=HelloConfig))


@hookimpl
def bottle_sidecar_image_parts():
    from bottle.sidecar.service import ImagePart

    return [ImagePart(name="hello", packages=("bottle_hello_sidecar",))]


@hookimpl
def bottle_register_commands(app):
    app.command("hello")(hello)


def hello(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the bottles (running or gone, while their state is kept) whose plan has a [hello] section."""
    from bottle import paths
    from bottle.cli.common import print_json
    from bottle.display import terminal_safe

    from bottle_hello_plugin.models import HelloPlan

    found = []
    for plan_file in sorted(paths.state_root().glob("*/plan.json")):
        # Read as JSON, not as a Plan: another plugin's section must not need that plugin loaded here.
        section = HelloPlan.from_plan_json(json.loads(plan_file.read_text(encoding="utf-8")))
        if section is None:
            continue
        heard = plan_file.with_name(HEARD_FILE)
        found.append({
            "slug": plan_file.parent.name,
            "greeting": section.greeting,
            "heard": heard.read_text(encoding="utf-8") if heard.is_file() else None,
        })
    if as_json:
        print_json(found)
        return
    for bottle in found:
        heard = "not asked yet" if bottle["heard"] is None else f"the guest heard {bottle['heard']!r}"
        print(terminal_safe(f"{bottle['slug']}: {bottle['greeting']!r}, {heard}"))


# -- planning: no side effects ----------------------------------------------------------


@hookimpl
def bottle_plan_section(ctx):
    config = ctx.profile.table("hello")
    if config is None:
        return None
    from bottle_hello_plugin.models import PORT, HelloPlan

    return HelloPlan(greeting=config.greeting, url=f"http://{ctx.sidecar.hostname}:{PORT}/")


@hookimpl
def bottle_sidecar_services(ctx):
    from bottle.sidecar.service import AUDIT, STATE_MOUNT, SidecarService

    from bottle_hello_plugin.models import PORT, HelloPlan

    if ctx.section(HelloPlan) is None:
        return None
    argv = ("python", "-m", "bottle_hello_sidecar.server", "--port", str(PORT), "--bottle", ctx.slug,
            "--greeting-file", f"{STATE_MOUNT}/{GREETING_FILE}", "--audit", AUDIT)
    return [SidecarService(name="hello", argv=argv, ready=READY, port=PORT, part="hello")]


# -- launch: the state dir exists, the sidecar has not started ----------------------------


@hookimpl
def bottle_sidecar_prepare(plan, sidecar):
    from bottle_hello_plugin.models import HelloPlan

    section = plan.section(HelloPlan)
    if section is None:
        return
    sidecar.state_file(GREETING_FILE, section.greeting)


# -- provisioning: the sandbox runs ----------------------------------------------------------


@hookimpl
def bottle_provision(plan, bottle):
    """Ask the service from the guest as the agent would (its proxy settings, ``NO_PROXY`` naming the sidecar)."""
    from bottle.errors import EnvironmentProblem

    from bottle_hello_plugin.models import HelloPlan

    section = plan.section(HelloPlan)
    if section is None:
        return
    result = bottle.exec(["curl", "--silent", "--show-error", "--fail", "--max-time", "10", section.url],
                         env=dict(plan.env))
    heard = result.stdout.decode(errors="replace")
    (plan.state_dir / HEARD_FILE).write_text(heard, encoding="utf-8")
    if result.exit_code != 0 or heard != section.greeting:
        why = result.stderr.decode(errors="replace").strip() or f"it answered {heard!r}"
        raise EnvironmentProblem(f"The guest cannot reach the hello service at {section.url}: {why}")
