"""The supervise deny rules: which tool calls the agent's Claude Code must not make.

A profile's ``[supervise] deny`` is a list of rules; the host validates them
with :func:`parse_rules` at ``bottle run`` and hands them to the supervise
server as a JSON file, which answers Claude Code's PreToolUse hook with them.
A rule is an object::

    {"tool": "Bash", "pattern": "\\\\bgit\\\\s+push\\\\b", "field": "command", "reason": "push through the gate"}

- ``tool`` (required): the tool's name, matched whole: ``"Bash"``; a regular
  expression such as ``"Edit|Write"`` or ``"mcp__.*"``; or ``"*"`` for every tool,
  as in Claude Code's own hook matchers.
- ``pattern`` (optional): a regular expression searched (``re.search``) in the
  call's input; without it every call of the tool is denied. Use ``(?i)`` for
  case-insensitive matching.
- ``field`` (optional): the top-level key of the tool's input to search, such as
  ``command`` for Bash or ``file_path`` for Write; a non-string value is searched
  in its JSON form. Without it the pattern is searched in the whole input as
  compact JSON with sorted keys (so quotes and newlines appear escaped). A call
  whose input lacks the field does not match.
- ``reason`` (optional): told to the agent with the denial.

The first matching rule denies. MCP tools go through the same hook, and
supervise's own are no exception (``mcp__supervise__request_egress`` when the
server is registered as "supervise"): a rule for ``*`` or ``mcp__.*`` also
closes the agent's way to ask.

These rules stop an agent's honest mistakes and record its attempts; they are
not the sandbox: a determined agent can phrase a command so that no pattern
sees it, or stop the hook that asks (it runs as the agent's user). The
sandbox and the sidecar are the boundary.

Stdlib only: the host imports this module.
"""

import json
import re
from dataclasses import dataclass

FIELDS = {"tool", "pattern", "field", "reason"}


class DenyRuleError(ValueError):
    """A deny rule that cannot be read; the message names the rule and the field."""


@dataclass(frozen=True)
class DenyRule:
    tool: re.Pattern
    pattern: re.Pattern | None
    field: str | None
    reason: str
    text: dict  # the rule as written, for messages and the audit log

    def matches(self, tool_name: str, tool_input: object) -> bool:
        if not self.tool.fullmatch(tool_name):
            return False
        if self.pattern is None:
            return True
        if self.field is None:
            subject = tool_input
        elif isinstance(tool_input, dict) and self.field in tool_input:
            subject = tool_input[self.field]
        else:
            return False
        if not isinstance(subject, str):
            subject = json.dumps(subject, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return self.pattern.search(subject) is not None


def parse_rules(rules: object) -> list[DenyRule]:
    """Read a list of deny rules (as decoded from JSON or TOML)."""
    if not isinstance(rules, list):
        raise DenyRuleError(f"deny rules must be a list of objects, not {type(rules).__name__}")
    return [parse_rule(rule, f"deny[{number}]") for number, rule in enumerate(rules)]


def parse_rule(rule: object, where: str = "deny rule") -> DenyRule:
    if not isinstance(rule, dict):
        raise DenyRuleError(f"{where}: expected an object with {', '.join(sorted(FIELDS))}, not {rule!r}")
    unknown = set(rule) - FIELDS
    if unknown:
        raise DenyRuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(FIELDS))}")
    for key in FIELDS:
        if key in rule and not isinstance(rule[key], str):
            raise DenyRuleError(f"{where}.{key}: expected a string, not {rule[key]!r}")
    tool = rule.get("tool")
    if not tool:
        raise DenyRuleError(f"{where}.tool: required (a tool name such as Bash, a regex such as Edit|Write, or *)")
    field = rule.get("field") or None
    if field is not None and "pattern" not in rule:
        raise DenyRuleError(f"{where}.field: a field is only searched with a pattern")
    return DenyRule(
        tool=_compile(".*" if tool == "*" else tool, f"{where}.tool"),
        pattern=_compile(rule["pattern"], f"{where}.pattern") if "pattern" in rule else None,
        field=field,
        reason=rule.get("reason", ""),
        text=dict(rule),
    )


def _compile(expression: str, where: str) -> re.Pattern:
    try:
        return re.compile(expression)
    except re.error as err:
        raise DenyRuleError(f"{where}: {expression!r} is not a regular expression: {err}") from None


def first_match(rules: list[DenyRule], tool_name: str, tool_input: object) -> DenyRule | None:
    return next((rule for rule in rules if rule.matches(tool_name, tool_input)), None)
