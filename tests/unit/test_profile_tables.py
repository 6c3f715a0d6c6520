"""The ``[git]`` and ``[supervise]`` tables of a bottle profile, as TOML read from disk.

They decide what the git gate lets through and which tool calls are denied,
so a mistyped field must stop ``bottle run`` with the file and the field
named, rather than reach the sidecar (which would refuse it only after
starting) or silently fall back to a default. Which credential goes with
which kind of upstream is checked elsewhere.
"""

from pathlib import Path

import pytest

from bottle.manifests.profile import GitConfig, GitCredential, GitIdentity, SuperviseConfig, load_profile


@pytest.fixture
def profile(home):
    return lambda name: load_profile(name, home.config_dir)


# -- [git] --------------------------------------------------------------------------------


def test_git_table_is_read_as_written(home, profile):
    home.profile("gated", """
[git]
upstream = "https://git.example.org/me/app.git"
push_refs = ["refs/heads/bottle/*", "refs/tags/agent-*"]
protected = ["refs/heads/main", "refs/heads/release/*"]
allow_force = true
max_push_mb = 7
identity = { name = "review bot", email = "bot@example.org" }
credential = { kind = "token", env = "GIT_TOKEN", username = "oauth2" }
""")
    assert profile("gated").git == GitConfig(
        upstream="https://git.example.org/me/app.git",
        push_refs=("refs/heads/bottle/*", "refs/tags/agent-*"),
        protected=("refs/heads/main", "refs/heads/release/*"),
        allow_force=True,
        max_push_mb=7,
        identity=GitIdentity(name="review bot", email="bot@example.org"),
        credential=GitCredential(kind="token", env="GIT_TOKEN", username="oauth2"),
    )


@pytest.mark.parametrize("toml", ["", "[git]\n"], ids=["no-table", "empty-table"])
def test_git_defaults_keep_the_gate_closed(home, profile, toml):
    """Without settings the agent may push only bottle/ branches, never force, 50 MB at most;
    ``protected`` stays unset so that the gate asks upstream for its default branch."""
    home.profile("plain", toml)
    git = profile("plain").git
    assert git.push_refs and all(pattern.startswith("refs/heads/bottle/") for pattern in git.push_refs)
    assert (git.upstream, git.protected, git.allow_force, git.max_push_mb, git.credential) == (None, None, False, 50, None)
    assert git.identity == GitIdentity(name="bottle agent", email="agent@bottle.invalid")


def test_an_empty_protected_list_is_kept_apart_from_none(home, profile):
    """``protected = []`` means "protect nothing", not "upstream's default branch"."""
    home.profile("open", "[git]\nprotected = []\n")
    assert profile("open").git.protected == ()


def test_git_table_merges_field_by_field_over_extends(home, profile):
    """A child that sets one field keeps the others of its parent, and the parent's own defaults."""
    home.profile("base", '[git]\nupstream = "/srv/app.git"\nmax_push_mb = 5\nidentity = { name = "base bot" }\n')
    home.profile("child", 'extends = "base"\n[git]\nallow_force = true\nmax_push_mb = 9\n')
    git = profile("child").git
    assert (git.upstream, git.allow_force, git.max_push_mb) == ("/srv/app.git", True, 9)
    assert git.identity == GitIdentity(name="base bot", email="agent@bottle.invalid")
    assert profile("base").git.allow_force is False


def test_ssh_upstream_with_key_file_and_pinned_host_key(home, profile):
    """The key file is named from the home directory; the host key line is kept as written."""
    pinned = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    home.profile("keyed", f"""
[git]
upstream = "git@git.example.org:me/app.git"
credential = {{ kind = "ssh_key", file = "~/.ssh/deploy" }}
known_hosts = "{pinned}"
""")
    git = profile("keyed").git
    assert git.credential == GitCredential(kind="ssh_key", file=Path(home.home) / ".ssh" / "deploy")
    assert git.known_hosts == pinned


@pytest.mark.parametrize(
    ("toml", "field", "says"),
    [
        ('colour = "red"', "git.colour", "unknown key"),
        ("upstream = 5", "git.upstream", "valid string"),
        ('push_refs = "refs/heads/bottle/*"', "git.push_refs", "tuple"),
        ('push_refs = ["bottle/*"]', "git.push_refs", "refs/"),
        ('protected = ["main"]', "git.protected", "refs/"),
        ('allow_force = "maybe"', "git.allow_force", "boolean"),
        ('allow_force = "yes"', "git.allow_force", "boolean"),  # TOML has booleans: a string is a mistake
        ("allow_force = 1", "git.allow_force", "boolean"),
        ("max_push_mb = true", "git.max_push_mb", "integer"),
        ('max_push_mb = "5"', "git.max_push_mb", "integer"),
        ("max_push_mb = 0", "git.max_push_mb", "greater than 0"),
        ("max_push_mb = 1.5", "git.max_push_mb", "integer"),
        ('identity = { email = "nobody" }', "git.identity.email", "pattern"),
        ('identity = { name = "" }', "git.identity.name", "at least 1"),
        ('identity = { nick = "x" }', "git.identity.nick", "unknown key"),
        ('credential = { kind = "password", env = "T" }', "git.credential.kind", "'token' or 'ssh_key'"),
        ('credential = { kind = "token" }', "git.credential", "exactly one of `env`"),
        ('credential = { kind = "token", env = "T", file = "/k" }', "git.credential", "exactly one of `env`"),
        ('credential = { kind = "token", env = "1-BAD" }', "git.credential.env", "pattern"),
        ('credential = { kind = "token", env = "T", value = "ghp_x" }', "git.credential.value", "unknown key"),
    ],
)
def test_bad_git_table_names_file_and_field(home, profile, usage_error, toml, field, says):
    path = home.profile("bad", f"[git]\n{toml}\n")
    usage_error(lambda: profile("bad"), path, f"field `{field}`", says)


def test_bad_git_table_in_a_parent_names_the_parent(home, profile, usage_error):
    home.profile("child", 'extends = "parent"\n[git]\nallow_force = true\n')
    parent = home.profile("parent", "[git]\nmax_push_mb = -1\n")
    usage_error(lambda: profile("child"), parent, "field `git.max_push_mb`")


def test_git_must_be_a_table(home, profile, usage_error):
    path = home.profile("flat", 'git = "https://git.example.org/app.git"\n')
    usage_error(lambda: profile("flat"), path, "field `git`")


# -- [supervise] --------------------------------------------------------------------------


def test_supervise_table_every_field(home, profile):
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
    assert profile("watched").supervise == SuperviseConfig(
        enabled=True,
        answer_timeout=30,
        deny=(
            {"tool": "Bash", "pattern": "rm -rf /", "reason": "not here"},
            {"tool": "Write|Edit", "pattern": "^/etc/", "field": "file_path"},
            {"tool": "WebFetch"},
        ),
    )


@pytest.mark.parametrize("toml", ["", "[supervise]\n"], ids=["no-table", "empty-table"])
def test_supervise_is_off_unless_enabled(home, profile, toml):
    home.profile("plain", toml)
    assert profile("plain").supervise == SuperviseConfig(enabled=False, answer_timeout=600, deny=())


def test_supervise_table_merges_field_by_field_over_extends(home, profile):
    home.profile("base", '[supervise]\nenabled = true\ndeny = [{ tool = "Bash" }]\n')
    home.profile("child", 'extends = "base"\n[supervise]\nanswer_timeout = 45\n')
    assert profile("child").supervise == SuperviseConfig(enabled=True, answer_timeout=45, deny=({"tool": "Bash"},))


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
def test_bad_supervise_table_names_file_and_field(home, profile, usage_error, toml, field, says):
    path = home.profile("bad", f"[supervise]\n{toml}\n")
    usage_error(lambda: profile("bad"), path, f"field `{field}`", says)
