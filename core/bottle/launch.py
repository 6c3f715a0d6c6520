"""Launch: execute a plan under one ExitStack, so that nothing that runs outlives the run.

Order: state dir, the bottle's network, then side by side the sidecar (what
the plugins' services need, ``bottle_sidecar_prepare``, then its container)
and the sandbox (whoever makes a resource registers it on the stack the
moment it exists),
plan files in one stream, the sidecar ready,
provisioners in the core's order, the agent. SIGTERM is turned into an exception like Ctrl-C so that
both unwind the stack; while the stack unwinds, further signals are ignored
so that teardown itself cannot be interrupted half-way. Teardown stops the
bottle: what runs goes, its durable state (the agent's home and workdir, the
state dir) stays for ``bottle resume``. After teardown, whatever ended the
run, a few lines on stderr say what is left to look at.
"""

import contextlib
import json
import signal
import sqlite3
import sys
from typing import Iterator

from bottle import transcript
from bottle.errors import EnvironmentProblem
from bottle.hookspecs import PROVISION_ORDER
from bottle.plan import Plan
from bottle.plugins import Plugins
from bottle.ports import Forwarder, Published
from bottle.prepare import write_state
from bottle.sidecar import runtime
from bottle.timings import Timings
from bottle.sessions import Inputs
from bottle_sidecar.audit import last_id, read_events


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def _signals(handler_int, handler_term) -> Iterator[None]:
    """SIGINT as given; SIGTERM and SIGHUP (the terminal went away) as *handler_term*."""
    handlers = {signal.SIGINT: handler_int, signal.SIGTERM: handler_term, signal.SIGHUP: handler_term}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report_stopping(plugins: Plugins, plan: Plan, bottle) -> None:
    try:
        plugins.hook.bottle_stopping(plan=plan, bottle=bottle)
    except Exception as err:  # observers must not stop teardown
        print(f"bottle: a plugin failed while the bottle was stopping: {err}", file=sys.stderr)


def _raise_if_sidecar_died(sidecar) -> None:
    reason = sidecar.failure()
    if reason:
        raise EnvironmentProblem(f"The bottle's sidecar died ({reason}); the bottle was stopped.")


def run_summary(plan: Plan, plugins: Plugins, since_id: int = 0) -> list[str]:
    """What the user needs once the bottle is stopped: its slug, what the plugins
    say their services did in this run (``bottle_run_summary``: the branches
    pushed, say; the audit log's rows after *since_id*), how to go on, and the
    command that shows the rest. Read from the audit log, which outlives the
    run; nothing when the bottle never got as far as its sidecar (then there
    is no log, and the error says it all)."""
    path = runtime.audit_path(plan.state_dir)
    if not path.is_file():
        return []
    try:
        events = read_events(path, since_id=since_id)
    except sqlite3.Error as err:
        return [f"bottle {plan.slug} stopped; its audit log {path} cannot be read: {err}"]
    lines = [f"bottle {plan.slug} stopped: `bottle resume {plan.slug}` goes on, `bottle rm {plan.slug}` deletes it."]
    for result in plugins.hook.bottle_run_summary(plan=plan, events=events):
        lines += result or []
    blocked = sum(event["decision"] == "blocked" for event in events)
    more = f" ({blocked} blocked: add --blocked)" if blocked else ""
    lines.append(f"what it did: bottle audit {plan.slug}{more}")
    return lines


def _print_summary(plan: Plan, plugins: Plugins, since_id: int) -> None:
    for line in run_summary(plan, plugins, since_id):
        print(f"bottle: {line}", file=sys.stderr)


def _prepare(plan: Plan, plugins: Plugins, timings: Timings):
    with timings.step("sidecar: prepare (in the background)"):
        return runtime.prepare(plan, plugins)


def launch(plan: Plan, plugins: Plugins, timings: Timings | None = None, inputs: Inputs | None = None) -> int:
    """Run *plan*; return the agent's exit code. Stops the bottle at the end, always. Each step is recorded in
    *timings* and, however the run ends, in the state dir's ``timings.json``. A new bottle's *inputs* (what
    ``bottle run`` was asked) are kept in its state dir, for ``bottle resume``."""
    timings = timings or Timings()
    backend = plugins.backend(plan.backend)
    with timings.step("backend check"):
        availability = backend.availability()
    if not availability.ok:
        raise EnvironmentProblem(f"Backend {plan.backend!r} cannot run here: {availability.reason}")
    write_state(plan, inputs)
    since_id = last_id(runtime.audit_path(plan.state_dir))  # a resumed bottle's log holds its earlier runs too
    stack = contextlib.ExitStack()
    sidecar = None
    with _signals(signal.default_int_handler, _raise_terminated):
        try:
            with timings.step("network"):
                network = backend.open_network(plan, stack)
            # The sidecar's material (a CA, secrets) and its start overlap the sandbox's creation.
            sidecar = backend.sidecar_host().start(plan, lambda: _prepare(plan, plugins, timings), network, stack)
            with timings.step("sandbox"):
                bottle = backend.open(plan, stack, network, sidecar)
            stack.callback(_report_stopping, plugins, plan, bottle)
            if plan.files:
                with timings.step("plan files"):
                    bottle.put_files(plan.files, uid=plan.guest.uid, gid=plan.guest.uid)
            with timings.step("sidecar ready (waited for)"):
                sidecar.wait_ready()
            for hook_name in PROVISION_ORDER:
                with timings.step(hook_name.replace("bottle_provision_", "provision: ").replace("bottle_", "")):
                    getattr(plugins.hook, hook_name)(plan=plan, bottle=bottle)
            plugins.hook.bottle_started(plan=plan, bottle=bottle)
            for host, guest in plan.publish:
                stack.callback(Forwarder(backend, plan.slug, Published(host, guest), plan.state_dir).start().stop)
            with timings.step("agent"), transcript.kept(plan.state_dir) if plan.headless else contextlib.nullcontext():
                code = bottle.run_agent(plan.agent_argv, env=plan.env, interactive=not plan.headless)
            # An agent that failed because its way out died should say so.
            _raise_if_sidecar_died(sidecar)
            return code
        except KeyboardInterrupt:
            if sidecar is not None:
                _raise_if_sidecar_died(sidecar)
            raise
        finally:
            with _signals(signal.SIG_IGN, signal.SIG_IGN):
                try:
                    with timings.step("teardown"):
                        if sidecar is not None:
                            sidecar.settle()  # never tear down around a sidecar still starting
                        stack.close()
                finally:  # on stderr: in a headless run, stdout is the agent's output
                    _print_summary(plan, plugins, since_id)
                    (plan.state_dir / "timings.json").write_text(json.dumps(timings.as_dict(), indent=2))
