"""Change a running bottle's allowlist without restarting its agent.

The policy of record is a file in the bottle's state dir, which its sidecar
sees through a bind mount; a change replaces that file atomically and the
proxy reloads it on its next request.
"""

import json

from docker.errors import NotFound

from bottle import paths
from bottle.engine import docker_client
from bottle.errors import UsageError
from bottle_sidecar.audit import AuditLog
from bottle_egress_sidecar.policy import RuleError, parse_rule
from bottle.sidecar.runtime import audit_path, sidecar_name
from bottle_egress.policy_file import policy_path, write_policy


def change_allowlist(slug: str, rule: str, *, allow: bool) -> list[str]:
    """Add (*allow*) or remove *rule*; return the new allowlist."""
    try:
        parse_rule(rule)
    except RuleError as err:
        raise UsageError(f"Argument HOST: {err}") from None
    state_dir = paths.state_root() / slug
    if not policy_path(state_dir).is_file():
        raise UsageError(f"No bottle {slug!r} with an egress policy (looked for {policy_path(state_dir)}); see `bottle ls`.")
    try:
        docker_client().containers.get(sidecar_name(slug))
    except NotFound:
        raise UsageError(f"Bottle {slug!r} is not running (its sidecar is gone); nothing to change.") from None
    document = json.loads(policy_path(state_dir).read_text())
    rules: list[str] = document["allow"]
    if allow and rule not in rules:
        rules.append(rule)
    elif not allow:
        if rule not in rules:
            raise UsageError(f"Bottle {slug!r} has no allow rule {rule!r}; its rules: {', '.join(rules) or 'none'}.")
        rules.remove(rule)
    write_policy(state_dir, document)
    log = AuditLog(audit_path(state_dir), slug)
    try:
        log.record("operator", "rule-added" if allow else "rule-removed", host=rule, reason="bottle egress")
    finally:
        log.close()
    return rules
