"""A third-party plugin, installed the way any other is (an entry point in the
``bottle`` group), that records every provisioning and lifecycle hook the core
calls, in order, and can be told to raise in one of them.

Tests put this directory on PYTHONPATH and set:
- ``BOTTLE_PROBE_LOG``: file receiving one JSON line per hook call;
- ``BOTTLE_PROBE_RAISE``: name of a hook that raises (to test teardown).
"""

import json
import os

from bottle import hookimpl
from bottle.hookspecs import PROVISION_ORDER


def _record(hook: str, plan, bottle, **extra) -> None:
    if os.environ.get("BOTTLE_PROBE_RAISE") == hook:
        raise RuntimeError(f"probe plugin raising in {hook} as asked")
    path = os.environ.get("BOTTLE_PROBE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"hook": hook, "slug": plan.slug, **extra}) + "\n")


def _guest_view(bottle, plan) -> dict:
    """What the guest holds once plan files are in place (an exec with captured output)."""
    result = bottle.exec(["sh", "-c", f'id -u; stat -c %U "{plan.guest.skills_dir}"; cat "{plan.guest.prompt_path}"'])
    return {"exit_code": result.exit_code, "stdout": result.stdout.decode(), "stderr": result.stderr.decode()}


def _make(hook_name: str):
    @hookimpl(specname=hook_name)
    def impl(plan, bottle):
        extra = _guest_view(bottle, plan) if hook_name == "bottle_provision_ca" else {}
        _record(hook_name, plan, bottle, **extra)

    impl.__name__ = f"probe_{hook_name}"
    return impl


for _hook in (*PROVISION_ORDER, "bottle_started", "bottle_stopping"):
    globals()[f"probe_{_hook}"] = _make(_hook)
