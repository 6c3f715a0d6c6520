"""The egress policy of record: a file in the bottle's sidecar state, which the proxy re-reads when it changes.

The host writes it at launch and whenever the operator changes the live
allowlist or budget (``bottle egress``, an approved proposal: :func:`change_live`);
it holds placeholders, never a credential's value.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

from bottle.sidecar.runtime import hand_over, sidecar_state
from bottle.sidecar.service import STATE_MOUNT
from bottle_egress.section import EgressPlan

POLICY_FILE = "policy.json"
POLICY = f"{STATE_MOUNT}/{POLICY_FILE}"  # as the proxy sees it


def policy_document(slug: str, egress: EgressPlan, allow: tuple[str, ...] | list[str]) -> dict:
    """The egress policy as the proxy reads it (no secret in it: placeholders only)."""
    return {
        "bottle": slug,
        "allow": list(allow),
        "secret_patterns": list(egress.secret_patterns),
        "credentials": [
            {"host": c.host, "port": c.port, "path": c.path, "header": c.header, "scheme": c.scheme, "name": c.env,
             "placeholder": c.placeholder, "on_secret": c.on_secret or ""}
            for c in egress.credentials
        ],
        "on_secret": [{"rule": rule, "mode": mode} for rule, mode in egress.on_secret.items()],
        "secret_exempt": {"detectors": list(egress.secret_exempt.detectors),
                          "values": list(egress.secret_exempt.values)},
        "prices": dict(egress.prices),
        **({"budget": {"max_tokens": egress.budget.max_tokens, "max_usd": egress.budget.max_usd,
                       "per": egress.budget.per}} if egress.budget else {}),
    }


def policy_path(state_dir: Path) -> Path:
    return sidecar_state(state_dir) / POLICY_FILE


def live_policy_path(slug: str) -> Path:
    """Bottle *slug*'s policy of record, or a usage error saying where bottle looked."""
    from bottle import paths
    from bottle.errors import UsageError

    path = policy_path(paths.state_root() / slug)
    if not path.is_file():
        raise UsageError(f"No bottle {slug!r} with an egress policy (looked for {path}); see `bottle ls`.")
    return path


def change_live(slug: str, change: Callable[[dict], dict], *, decision: str, reason: str, **audited) -> dict:
    """Change bottle *slug*'s policy of record: *change* edits the document in place (raising UsageError when it
    cannot) and returns what to audit as ``detail``; the new policy is written and the change is in the audit
    log (``operator``, *decision*, *reason*, *audited* fields). Returns the document as written."""
    from bottle import paths
    from bottle.sidecar.runtime import audit_path
    from bottle_sidecar.audit import AuditLog

    document = json.loads(live_policy_path(slug).read_text())
    state_dir = paths.state_root() / slug
    detail = change(document)
    write_policy(state_dir, document)
    log = AuditLog(audit_path(state_dir), slug)
    try:
        log.record("operator", decision, reason=reason, detail=detail, **audited)
    finally:
        log.close()
    return document


def write_policy(state_dir: Path, document: dict) -> None:
    """Replace the policy atomically: the proxy never reads half a file."""
    target = policy_path(state_dir)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=2))
    hand_over([partial])  # the proxy reads it, whatever the umask
    os.replace(partial, target)


def with_live_changes(state_dir: Path, before: EgressPlan | None, allow: tuple[str, ...]) -> tuple[str, ...]:
    """*allow* (the profile's rules), changed as the operator changed the live allowlist of the bottle's last run
    (*before* is that run's plan section; None: there was none): a resumed bottle keeps what was granted."""
    path = policy_path(state_dir)
    if before is None or not path.is_file():
        return allow
    live = json.loads(path.read_text())["allow"]
    removed = {rule for rule in before.allow if rule not in live}
    added = [rule for rule in live if rule not in before.allow and rule not in allow]
    return (*(rule for rule in allow if rule not in removed), *added)


def with_live_budget(state_dir: Path, before: EgressPlan | None, budget):
    """*budget* (the profile's ``[budget]``), with what the operator raised live in the bottle's last run kept
    (an approved proposal, ``bottle egress budget``): a resumed bottle does not fall back under it."""
    path = policy_path(state_dir)
    if budget is None or before is None or before.budget is None or not path.is_file():
        return budget
    live = json.loads(path.read_text()).get("budget") or {}
    changed = {name: live[name] for name in ("max_tokens", "max_usd")
               if live.get(name) is not None and live.get(name) != getattr(before.budget, name)}
    return budget.model_copy(update=changed)
