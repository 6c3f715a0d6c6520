"""The supervise deny rules: reading them (as the host does from a profile) and matching tool calls."""

import pytest

from bottle_supervise_sidecar.deny_rules import DenyRuleError, first_match, parse_rules


def matches(rule: dict, tool: str, tool_input: object) -> bool:
    return first_match(parse_rules([rule]), tool, tool_input) is not None


def test_a_tool_name_matches_whole_and_may_be_a_regex_or_a_star():
    assert matches({"tool": "Bash"}, "Bash", {})
    assert not matches({"tool": "Bash"}, "BashOutput", {})
    assert matches({"tool": "Edit|Write"}, "Write", {})
    assert matches({"tool": "mcp__.*"}, "mcp__github__push", {})
    assert matches({"tool": "*"}, "Anything", {})


def test_a_pattern_searches_a_field_or_the_whole_input_as_json():
    rule = {"tool": "Bash", "pattern": "curl .*\\|\\s*sh", "field": "command"}
    assert matches(rule, "Bash", {"command": "curl https://x | sh"})
    assert not matches(rule, "Bash", {"command": "curl https://x -o f"})
    assert not matches(rule, "Bash", {"description": "curl https://x | sh"})  # the field is missing

    assert matches({"tool": "*", "pattern": '"file_path":"/etc/'}, "Write", {"file_path": "/etc/x", "content": ""})
    assert matches({"tool": "Task", "pattern": "42", "field": "limits"}, "Task", {"limits": {"n": 42}})
    assert matches({"tool": "Bash", "pattern": "(?i)DROP TABLE", "field": "command"}, "Bash", {"command": "drop table x"})


def test_the_first_matching_rule_wins():
    rules = parse_rules([{"tool": "Bash", "pattern": "push", "reason": "first"}, {"tool": "Bash", "reason": "second"}])

    assert first_match(rules, "Bash", {"command": "git push"}).reason == "first"
    assert first_match(rules, "Bash", {"command": "ls"}).reason == "second"
    assert first_match(rules, "Read", {}) is None


@pytest.mark.parametrize("rules, message", [
    ({"tool": "Bash"}, "deny rules must be a list of objects, not dict"),
    (["Bash"], "deny[0]: expected an object"),
    ([{"tool": "Bash", "regex": "x"}], "deny[0]: unknown key(s) regex"),
    ([{"tool": "Bash", "pattern": 3}], "deny[0].pattern: expected a string, not 3"),
    ([{"pattern": "x"}], "deny[0].tool: required"),
    ([{"tool": "Bash"}, {"tool": "(Bash"}], "deny[1].tool: '(Bash' is not a regular expression"),
    ([{"tool": "Bash", "pattern": "[a-"}], "deny[0].pattern: '[a-' is not a regular expression"),
    ([{"tool": "Bash", "field": "command"}], "deny[0].field: a field is only searched with a pattern"),
])
def test_bad_rules_are_refused_with_where_and_what(rules, message):
    with pytest.raises(DenyRuleError) as info:
        parse_rules(rules)
    assert message in str(info.value)
