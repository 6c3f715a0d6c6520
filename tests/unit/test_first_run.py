"""The first run: what ``bottle run AGENT`` does before any profile is written, the
profile the README shows, and what cannot work said before anything starts (or once).

The built-in ``default`` profile allows the real Anthropic API, so it is tested
through the plan only (``--dry-run``), never by starting a bottle.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bottle.errors import EnvironmentProblem
from bottle_egress.tables import CredentialRoute
from bottle_provisioners import claude

BUILTIN_CREDENTIALS = tuple(CredentialRoute(**route) for route in claude.BUILTIN_CREDENTIALS)
from bottle.plan import Plan
from bottle.prepare import build_plan
from bottle.settings import load_settings
from bottle_gitgate_sidecar import gitgate
from bottle_sidecar import init
from bottle.sidecar.runtime import _wait_ready
from bottle_git.plugin import gate_config
from tests.support.certs import TestCA
from tests.unit.conftest import UNIT_API_KEY

API_KEY, OAUTH_TOKEN = (route.env for route in BUILTIN_CREDENTIALS)
UNIT_OAUTH_TOKEN = "sk-ant-oat01-unit-test-token-never-in-a-plan"
README = Path(__file__).resolve().parents[2] / "README.md"
#: How Anthropic's API keys and subscription tokens look: 108 characters ending in "AA".
ANTHROPIC_SHAPE = re.compile(r"sk-ant-(api03|oat01)-[A-Za-z0-9_-]{93}AA")


@pytest.fixture
def dry_run(home, run_bottle):
    """``dry_run()``: ``bottle run first --dry-run --json`` for an agent that names no profile;
    the plan, and the JSON as printed."""
    home.agent("first")

    def plan() -> tuple[Plan, str]:
        code, out, err = run_bottle("run", "first", "--dry-run", "--json")
        assert code == 0, err
        return Plan.model_validate(json.loads(out)), out

    return plan


# -- the built-in default profile ------------------------------------------------------------


def test_built_in_default_reaches_the_api_with_the_api_key(dry_run):
    plan, printed = dry_run()
    assert (plan.profile, plan.profile_files, plan.sections["egress"].allow) == ("default", (), ("api.anthropic.com",))
    [route] = plan.sections["egress"].credentials
    assert (route.host, route.header, route.scheme, route.env) == ("api.anthropic.com", "x-api-key", "", API_KEY)
    assert plan.env[API_KEY] == route.placeholder and ANTHROPIC_SHAPE.fullmatch(route.placeholder)
    assert OAUTH_TOKEN not in plan.env
    assert UNIT_API_KEY not in printed
    assert plan.notes == ("built-in profile 'default': api.anthropic.com with ANTHROPIC_API_KEY",)


def test_built_in_default_logs_in_with_a_subscription_token(dry_run, monkeypatch):
    monkeypatch.delenv(API_KEY)
    monkeypatch.setenv(OAUTH_TOKEN, UNIT_OAUTH_TOKEN)
    plan, printed = dry_run()
    [route] = plan.sections["egress"].credentials
    # Claude Code sends the token it finds in CLAUDE_CODE_OAUTH_TOKEN as a bearer token.
    assert (route.host, route.header, route.scheme, route.env) == ("api.anthropic.com", "authorization", "Bearer",
                                                                    OAUTH_TOKEN)
    assert plan.env[OAUTH_TOKEN] == route.placeholder and route.placeholder.startswith("sk-ant-oat01-bottle-placeholder")
    assert API_KEY not in plan.env
    assert UNIT_OAUTH_TOKEN not in printed


def test_with_both_the_api_key_is_used_and_the_plan_says_so(dry_run, home, run_bottle, monkeypatch):
    monkeypatch.setenv(OAUTH_TOKEN, UNIT_OAUTH_TOKEN)
    plan, printed = dry_run()
    assert [route.env for route in plan.sections["egress"].credentials] == [API_KEY]
    assert OAUTH_TOKEN not in plan.env
    assert any(OAUTH_TOKEN in note and "not used" in note for note in plan.notes)
    assert UNIT_API_KEY not in printed and UNIT_OAUTH_TOKEN not in printed
    code, table, err = run_bottle("run", "first", "--dry-run")
    assert code == 0, err
    assert "api.anthropic.com: x-api-key: $ANTHROPIC_API_KEY" in table and "not used" in table
    assert UNIT_API_KEY not in table and UNIT_OAUTH_TOKEN not in table


@pytest.mark.parametrize("flags", [("--dry-run",), ("--prompt", "hi")], ids=["dry-run", "run"])
def test_with_neither_nothing_starts_and_the_message_says_what_to_set(home, run_bottle, monkeypatch, flags):
    monkeypatch.delenv(API_KEY)
    home.agent("first")
    # Were the check missing, the run would fail at this engine instead of starting a bottle.
    code, out, err = run_bottle("run", "first", *flags, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    for fragment in (API_KEY, OAUTH_TOKEN, "claude setup-token", "`[[credentials]]`",
                     home.config_dir / "bottles" / "default.toml"):
        assert str(fragment) in err
    assert not home.state_root.exists()


def test_a_written_default_profile_is_used_as_written(home, dry_run, monkeypatch):
    monkeypatch.setenv(OAUTH_TOKEN, UNIT_OAUTH_TOKEN)
    path = home.profile("default", "cpus = 1\n")
    plan, _ = dry_run()
    assert (plan.profile_files, plan.sections["egress"].allow, plan.sections["egress"].credentials, plan.notes) == ((path,), (), (), ())


# -- placeholders -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", BUILTIN_CREDENTIALS, ids=lambda route: route.env)
def test_anthropic_placeholders_have_the_real_shape_and_say_what_they_are(route):
    placeholder = route.placeholder
    assert ANTHROPIC_SHAPE.fullmatch(placeholder), placeholder
    prefix = {API_KEY: "sk-ant-api03-", OAUTH_TOKEN: "sk-ant-oat01-"}[route.env]
    assert placeholder.startswith(prefix + "bottle-placeholder-")


def test_other_placeholders_keep_the_generic_form():
    assert CredentialRoute(host="api.example.org", env="EXAMPLE_TOKEN").placeholder == "bottle-placeholder-example_token"


# -- credential routes -------------------------------------------------------------------------

API_KEY_ROUTE = '[[credentials]]\nhost = "api.anthropic.com"\nheader = "x-api-key"\nenv = "ANTHROPIC_API_KEY"\n'
TOKEN_ROUTE = ('[[credentials]]\nhost = "api.anthropic.com"\nheader = "authorization"\nscheme = "Bearer"\n'
               'env = "CLAUDE_CODE_OAUTH_TOKEN"\n')


def test_two_routes_for_one_host_are_refused(home, run_bottle):
    path = home.profile("both", API_KEY_ROUTE + TOKEN_ROUTE)
    home.agent("first", bottle="both")
    code, _, err = run_bottle("run", "first", "--dry-run")
    assert code == 2 and str(path) in err and "`credentials`" in err and "one credential per host" in err


def test_a_child_route_replaces_its_parents_for_the_host(home, dry_run, monkeypatch):
    monkeypatch.setenv(OAUTH_TOKEN, UNIT_OAUTH_TOKEN)
    home.profile("base", API_KEY_ROUTE)
    home.profile("default", 'extends = "base"\n' + TOKEN_ROUTE)
    plan, _ = dry_run()
    assert [(c.header, c.env) for c in plan.sections["egress"].credentials] == [("authorization", OAUTH_TOKEN)]
    assert API_KEY not in plan.env


# -- [git] pairings that cannot work ------------------------------------------------------------

TOKEN = 'credential = { kind = "token", env = "GIT_TOKEN" }'
KEY = 'credential = { kind = "ssh_key", file = "/keys/deploy" }'
PINNED = 'known_hosts = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"'


@pytest.mark.parametrize(
    ("git", "field", "says"),
    [
        (f'upstream = "git@git.example.org:me/app.git"\n{TOKEN}', "git.credential.kind", "not https://"),
        (f'upstream = "git.example.org:me/app.git"\n{TOKEN}', "git.credential.kind", "not https://"),  # no user@
        (f'upstream = "ssh://git@git.example.org/me/app.git"\n{TOKEN}', "git.credential.kind", "not https://"),
        (f'upstream = "http://git.example.org/me/app.git"\n{TOKEN}', "git.credential.kind", "not https://"),
        (f'upstream = "https://git.example.org/me/app.git"\n{KEY}', "git.credential.kind", "needs an ssh upstream"),
        (f'upstream = "/srv/app.git"\n{TOKEN}', "git.credential", "local path"),
        (KEY, "git.credential", "the repository under work"),
        ('upstream = "git@git.example.org:me/app.git"', "git.credential", "no other SSH key"),
        (f'upstream = "https://git.example.org/me/app.git"\n{PINNED}', "git.known_hosts", "ssh_key"),
        (f'upstream = "https://git.example.org/me/app.git"\n{TOKEN}\n{PINNED}', "git.known_hosts", "ssh_key"),
    ],
    ids=["scp-token", "scp-no-user-token", "ssh-url-token", "http-token", "https-key", "local-token", "unset-key", "ssh-bare",
         "https-pinned", "https-token-pinned"],
)
def test_impossible_pairings_are_refused_naming_the_field(home, run_bottle, git, field, says):
    path = home.profile("paired", f"[git]\n{git}\n")
    home.agent("first", bottle="paired")
    code, out, err = run_bottle("run", "first", "--dry-run")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{path}: field `{field}`:" in err and says in err
    assert len(err.strip().splitlines()) == 1  # said once


@pytest.fixture
def bare(tmp_path) -> Path:
    subprocess.run(["git", "init", "--quiet", "--bare", str(tmp_path / "up.git")], check=True)
    return tmp_path / "up.git"


@pytest.mark.parametrize(
    "git",
    [
        'upstream = "https://git.example.org/me/app.git"',
        f'upstream = "https://git.example.org/me/app.git"\n{TOKEN}',
        f'upstream = "git@git.example.org:me/app.git"\n{KEY}\n{PINNED}',
        f'upstream = "ssh://git@git.example.org/me/app.git"\n{KEY}',
        'upstream = "BARE"',
    ],
    ids=["https", "https-token", "scp-key-pinned", "ssh-url-key", "local"],
)
def test_possible_pairings_make_a_config_the_gate_accepts(home, plugins, bare, git):
    home.profile("paired", f'[git]\nprotected = ["refs/heads/main"]\n{git.replace("BARE", str(bare))}\n')
    home.agent("first", bottle="paired")
    plan = build_plan("first", settings=load_settings(), plugins=plugins)
    gitgate._config(gate_config(plan.slug, plan.sections["git"]))  # what the gate checks when it starts; raises if it would refuse


def test_a_pairing_split_over_extends_is_checked_merged(home, run_bottle):
    home.profile("base", '[git]\nupstream = "https://git.example.org/me/app.git"\n')
    home.profile("token", f'extends = "base"\n[git]\n{TOKEN}\n')
    child = home.profile("keyed", f'extends = "base"\n[git]\n{KEY}\n')
    home.agent("fine", bottle="token")
    home.agent("first", bottle="keyed")
    assert run_bottle("run", "fine", "--dry-run")[0] == 0
    code, _, err = run_bottle("run", "first", "--dry-run")
    assert code == 2 and str(child) in err and "`git.credential.kind`" in err


# -- the README's profile ------------------------------------------------------------------------


def test_the_readme_profile_plans_as_written(home, run_bottle):
    """The big TOML block under "Using it", verbatim, with the files it names made."""
    [toml] = re.findall(r"A \*\*bottle profile\*\*.*?```toml\n(.*?)```", README.read_text(), re.DOTALL)
    (home.home / "corp-ca.pem").write_bytes(TestCA.create().cert_pem)  # trust = ["~/corp-ca.pem"]
    home.profile("readme", toml)
    home.agent("first", bottle="readme")
    code, out, err = run_bottle("run", "first", "--dry-run", "--json")
    assert code == 0, err
    plan = Plan.model_validate(json.loads(out))
    assert "api.anthropic.com" in plan.sections["egress"].allow and [c.env for c in plan.sections["egress"].credentials] == [API_KEY]
    assert plan.sections["git"].upstream.startswith("https://") and plan.sections["git"].credential.kind == "token"
    assert "supervise" in plan.sections and plan.resources.cpus == 2


# -- a sidecar that cannot start ------------------------------------------------------------------


def test_a_service_that_cannot_start_is_reported_once():
    """The real init's output for a gate that exits at start, as the engine would stream it."""
    say = "bottle-gitgate: cannot fetch from upstream https://git.example.org/app.git"
    service = {"name": "gitgate", "argv": [sys.executable, "-c", f"print({say!r}); raise SystemExit(2)"],
               "ready": "bottle-gitgate: listening"}
    output = subprocess.run([sys.executable, init.__file__, "--config", "-", "--user", ""],
                            input=json.dumps({"services": [service]}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=30).stdout
    assert output.count(say) == 2  # relayed as it was printed, then in the report of the exit

    class Container:
        name = "bottle-first-sidecar"

        def logs(self, **_):
            return iter([output.encode()])

        def kill(self):
            pass

    with pytest.raises(EnvironmentProblem) as raised:
        _wait_ready(Container())
    assert str(raised.value).count(say) == 1 and "service gitgate exited with code 2" in str(raised.value)
