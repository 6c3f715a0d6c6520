"""Change a running bottle's allowlist without restarting its agent.

The policy of record is a file in the bottle's state dir, which its sidecar
sees through a bind mount; a change replaces that file atomically and the
proxy reloads it on its next request.
"""

from docker.errors import NotFound

from bottle.engine import docker_client
from bottle.errors import UsageError
from bottle_egress_sidecar.policy import RuleError, parse_rule
from bottle.sidecar.runtime import sidecar_name
from bottle_egress.policy_file import change_live, live_policy_path


def change_allowlist(slug: str, rule: str, *, allow: bool) -> list[str]:
    """Add (*allow*) or remove *rule*; return the new allowlist."""
    try:
        parse_rule(rule)
    except RuleError as err:
        raise UsageError(f"Argument HOST: {err}") from None
    live_policy_path(slug)  # an unknown bottle is said before asking the engine whether it runs
    try:
        docker_client().containers.get(sidecar_name(slug))
    except NotFound:
        raise UsageError(f"Bottle {slug!r} is not running (its sidecar is gone); nothing to change.") from None

    def change(document: dict) -> None:
        rules: list[str] = document["allow"]
        if allow and rule not in rules:
            rules.append(rule)
        elif not allow:
            if rule not in rules:
                raise UsageError(f"Bottle {slug!r} has no allow rule {rule!r}; its rules: {', '.join(rules) or 'none'}.")
            rules.remove(rule)

    return change_live(slug, change, decision="rule-added" if allow else "rule-removed", reason="bottle egress",
                       host=rule)["allow"]
