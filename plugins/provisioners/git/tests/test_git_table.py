"""The ``[git]`` table of a bottle profile, as TOML read from disk.

It decides what the git gate lets through, so a mistyped field must stop ``bottle run`` with the file and the field
named, rather than reach the sidecar (which would refuse it only after
starting) or silently fall back to a default. Which credential goes with
which kind of upstream is checked elsewhere.
"""

from pathlib import Path

import pytest

from bottle_git.tables import GitConfig, GitCredential, GitIdentity


# -- [git] --------------------------------------------------------------------------------


def test_git_table_is_read_as_written(home, plugin_profile):
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
    assert plugin_profile("gated").table("git") == GitConfig(
        upstream="https://git.example.org/me/app.git",
        push_refs=("refs/heads/bottle/*", "refs/tags/agent-*"),
        protected=("refs/heads/main", "refs/heads/release/*"),
        allow_force=True,
        max_push_mb=7,
        identity=GitIdentity(name="review bot", email="bot@example.org"),
        credential=GitCredential(kind="token", env="GIT_TOKEN", username="oauth2"),
    )


@pytest.mark.parametrize("toml", ["", "[git]\n"], ids=["no-table", "empty-table"])
def test_git_defaults_keep_the_gate_closed(home, plugin_profile, toml):
    """Without settings the agent may push only bottle/ branches, never force, 50 MB at most;
    ``protected`` stays unset so that the gate asks upstream for its default branch."""
    home.profile("plain", toml)
    git = plugin_profile("plain").table("git")
    assert git.push_refs and all(pattern.startswith("refs/heads/bottle/") for pattern in git.push_refs)
    assert (git.upstream, git.protected, git.allow_force, git.max_push_mb, git.credential) == (None, None, False, 50, None)
    assert git.identity == GitIdentity(name="bottle agent", email="agent@bottle.invalid")


def test_an_empty_protected_list_is_kept_apart_from_none(home, plugin_profile):
    """``protected = []`` means "protect nothing", not "upstream's default branch"."""
    home.profile("open", "[git]\nprotected = []\n")
    assert plugin_profile("open").table("git").protected == ()


def test_git_table_merges_field_by_field_over_extends(home, plugin_profile):
    """A child that sets one field keeps the others of its parent, and the parent's own defaults."""
    home.profile("base", '[git]\nupstream = "/srv/app.git"\nmax_push_mb = 5\nidentity = { name = "base bot" }\n')
    home.profile("child", 'extends = "base"\n[git]\nallow_force = true\nmax_push_mb = 9\n')
    git = plugin_profile("child").table("git")
    assert (git.upstream, git.allow_force, git.max_push_mb) == ("/srv/app.git", True, 9)
    assert git.identity == GitIdentity(name="base bot", email="agent@bottle.invalid")
    assert plugin_profile("base").table("git").allow_force is False


def test_ssh_upstream_with_key_file_and_pinned_host_key(home, plugin_profile):
    """The key file is named from the home directory; the host key line is kept as written."""
    pinned = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    home.profile("keyed", f"""
[git]
upstream = "git@git.example.org:me/app.git"
credential = {{ kind = "ssh_key", file = "~/.ssh/deploy" }}
known_hosts = "{pinned}"
""")
    git = plugin_profile("keyed").table("git")
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
def test_bad_git_table_names_file_and_field(home, plugin_profile, usage_error, toml, field, says):
    path = home.profile("bad", f"[git]\n{toml}\n")
    usage_error(lambda: plugin_profile("bad"), path, f"field `{field}`", says)


def test_bad_git_table_in_a_parent_names_the_parent(home, plugin_profile, usage_error):
    home.profile("child", 'extends = "parent"\n[git]\nallow_force = true\n')
    parent = home.profile("parent", "[git]\nmax_push_mb = -1\n")
    usage_error(lambda: plugin_profile("child"), parent, "field `git.max_push_mb`")


def test_git_must_be_a_table(home, plugin_profile, usage_error):
    path = home.profile("flat", 'git = "https://git.example.org/app.git"\n')
    usage_error(lambda: plugin_profile("flat"), path, "field `git`")
