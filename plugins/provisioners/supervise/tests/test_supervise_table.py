"""The ``[supervise]`` table of a bottle profile, as TOML read from disk.

It decides which tool calls are denied, so a mistyped field must stop
``bottle run`` with the file and the field named, rather than reach the
sidecar (which would refuse it only after starting) or silently fall back to
a default.
"""

import pytest

from bottle_supervise.tables import SuperviseConfig


# -- [supervise] --------------------------------------------------------------------------


def test_supervise_table_every_field(home, plugin_profile):
    home.profile("watched", """
[supervise]
enabled = true
answer_timeout = 30
deny = [
  { tool = "Bash", pattern = "rm -rf /", reason = "not here" },
  { tool = "Write|Edit", pattern = "^/etc/", field = "file_path" },
  { tool = "WebFetch" },
]
""")
    assert plugin_profile("watched").table("supervise") == SuperviseConfig(
        enabled=True,
        answer_timeout=30,
        deny=(
            {"tool": "Bash", "pattern": "rm -rf /", "reason": "not here"},
            {"tool": "Write|Edit", "pattern": "^/etc/", "field": "file_path"},
            {"tool": "WebFetch"},
        ),
    )


@pytest.mark.parametrize("toml", ["", "[supervise]\n"], ids=["no-table", "empty-table"])
def test_supervise_is_off_unless_enabled(home, plugin_profile, toml):
    home.profile("plain", toml)
    assert plugin_profile("plain").table("supervise") == SuperviseConfig(enabled=False, answer_timeout=600, deny=())


def test_supervise_table_merges_field_by_field_over_extends(home, plugin_profile):
    home.profile("base", '[supervise]\nenabled = true\ndeny = [{ tool = "Bash" }]\n')
    home.profile("child", 'extends = "base"\n[supervise]\nanswer_timeout = 45\n')
    assert plugin_profile("child").table("supervise") == SuperviseConfig(enabled=True, answer_timeout=45, deny=({"tool": "Bash"},))


@pytest.mark.parametrize(
    ("toml", "field", "says"),
    [
        ("enable = true", "supervise.enable", "unknown key"),
        ('enabled = "sometimes"', "supervise.enabled", "boolean"),
        ('enabled = "true"', "supervise.enabled", "boolean"),
        ('answer_timeout = "60"', "supervise.answer_timeout", "integer"),
        ("answer_timeout = 0", "supervise.answer_timeout", "greater than 0"),
        ("answer_timeout = 86401", "supervise.answer_timeout", "86400"),
        ('deny = "Bash"', "supervise.deny", "tuple"),
        ('deny = ["Bash"]', "supervise.deny.0", "dictionary"),
        ('deny = [{ pattern = "x" }]', "supervise.deny", "deny[0].tool: required"),
        ('deny = [{ tool = "Bash" }, { tool = "Bash", pattern = "(" }]', "supervise.deny",
         "deny[1].pattern: '(' is not a regular expression"),
        ('deny = [{ tool = "Bash", field = "command" }]', "supervise.deny", "deny[0].field: a field is only searched"),
        ('deny = [{ tool = "Bash", colour = "x" }]', "supervise.deny", "deny[0]: unknown key(s) colour"),
        ('deny = [{ tool = "Bash", reason = 3 }]', "supervise.deny", "deny[0].reason: expected a string"),
    ],
)
def test_bad_supervise_table_names_file_and_field(home, plugin_profile, usage_error, toml, field, says):
    path = home.profile("bad", f"[supervise]\n{toml}\n")
    usage_error(lambda: plugin_profile("bad"), path, f"field `{field}`", says)
