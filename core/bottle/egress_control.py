"""Change a running bottle's allowlist without restarting its agent.

The host keeps the policy of record in the bottle's state dir; a change is
written there and then copied over the sidecar's policy file, which the
proxy reloads on its next request.
"""

import io
import json
import posixpath
import tarfile
import time

from docker.errors import NotFound

from bottle import paths
from bottle.engine import docker_client
from bottle.errors import UsageError
from bottle.sidecar.audit import AuditLog
from bottle.sidecar.policy import RuleError, parse_rule
from bottle.sidecar_runtime import POLICY_PATH, SIDECAR_UID, audit_path, sidecar_name


def _policy_file(slug: str):
    path = paths.state_root() / slug / "policy.json"
    if not path.is_file():
        raise UsageError(f"No bottle {slug!r} with an egress policy (looked for {path}); see `bottle ls`.")
    return path


def _push(container, document: dict) -> None:
    data = json.dumps(document, indent=2).encode()
    info = tarfile.TarInfo(posixpath.basename(POLICY_PATH))
    info.size, info.mode, info.mtime = len(data), 0o644, time.time()
    info.uid = info.gid = SIDECAR_UID
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(posixpath.dirname(POLICY_PATH), buffer.getvalue())


def change_allowlist(slug: str, rule: str, *, allow: bool) -> list[str]:
    """Add (*allow*) or remove *rule*; return the new allowlist."""
    try:
        parse_rule(rule)
    except RuleError as err:
        raise UsageError(f"Argument HOST: {err}") from None
    path = _policy_file(slug)
    document = json.loads(path.read_text())
    rules: list[str] = document["allow"]
    if allow and rule not in rules:
        rules.append(rule)
    elif not allow:
        if rule not in rules:
            raise UsageError(f"Bottle {slug!r} has no allow rule {rule!r}; its rules: {', '.join(rules) or 'none'}.")
        rules.remove(rule)
    try:
        container = docker_client().containers.get(sidecar_name(slug))
    except NotFound:
        raise UsageError(f"Bottle {slug!r} is not running (its sidecar is gone); nothing to change.") from None
    _push(container, document)
    path.write_text(json.dumps(document, indent=2))
    log = AuditLog(audit_path(path.parent), slug)
    try:
        log.record("operator", "rule-added" if allow else "rule-removed", host=rule, reason="bottle egress")
    finally:
        log.close()
    return rules
