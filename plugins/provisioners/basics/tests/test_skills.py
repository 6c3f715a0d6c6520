"""Skills: found, checked and planned before anything starts.

Every check runs twice: through ``resolve_skill`` directly and through a real
plan (``build_plan`` with the installed plugins), which is how a user meets it.
"""

import io
import os
import tarfile

import pytest

from bottle.plan import PlanFile
from bottle.prepare import build_plan
from bottle.settings import load_settings
from bottle.tarball import pack
from bottle_provisioners.skills import resolve_skill, skill_dirs


@pytest.fixture(params=["resolve_skill", "build_plan"])
def resolve(request, home, plugins):
    """``resolve(name)``: an agent naming skill *name* is written, its skill resolved to a host dir."""

    def via_resolve_skill(name):
        agent = home.agent("agent", skills=[name])
        return resolve_skill(name, agent, skill_dirs(home.project, home.config_dir))

    def via_plan(name):
        home.agent("agent", skills=[name])
        plan = build_plan("agent", settings=load_settings(), plugins=plugins)
        [skill] = [f for f in plan.files if f.provider == "skills"]
        assert skill.guest_path == f"{plan.guest.skills_dir}/{name}"
        return skill.host_path

    return via_resolve_skill if request.param == "resolve_skill" else via_plan


@pytest.fixture
def agent_file(home):
    return home.project / ".bottle" / "agents" / "agent.md"


@pytest.mark.parametrize("where", ["repo", "config"])
def test_skill_found(home, resolve, where):
    skill = home.skill("style", where=where)
    assert resolve("style") == skill


def test_missing_skill(home, resolve, usage_error, agent_file):
    usage_error(
        lambda: resolve("ghost"),
        agent_file,
        "`skills`",
        "'ghost'",
        home.project / ".bottle" / "skills",
        home.config_dir / "skills",
    )


def test_skill_without_skill_md(home, resolve, usage_error, agent_file):
    skill = home.skill("empty", files={"README.md": "not the right file"})
    usage_error(lambda: resolve("empty"), agent_file, "`skills`", skill, "SKILL.md")


def test_skill_that_is_a_file_is_missing(home, resolve, usage_error, agent_file):
    (home.project / ".bottle" / "skills").mkdir(parents=True)
    (home.project / ".bottle" / "skills" / "flat").write_text("# not a directory")
    usage_error(lambda: resolve("flat"), agent_file, "`skills`", "'flat'")


@pytest.mark.parametrize("name", ["a/b", "..", "../outside", "x/../../y", "/etc"])
def test_names_that_could_escape_are_rejected(home, resolve, usage_error, agent_file, name):
    # a real target exists where an unchecked path would lead
    (home.project / ".bottle" / "skills" / "a" / "b").mkdir(parents=True)
    (home.project / ".bottle" / "skills" / "a" / "b" / "SKILL.md").write_text("# b")
    usage_error(lambda: resolve(name), agent_file, "`skills`", "Invalid skill name")


def test_symlink_outside_the_skill_is_an_error(home, resolve, usage_error, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    skill = home.skill("leaky")
    (skill / "notes.md").symlink_to(secret)
    usage_error(lambda: resolve("leaky"), skill / "notes.md", secret, "outside")


def test_symlinked_directory_outside_the_skill_is_an_error(home, resolve, usage_error):
    skill = home.skill("leaky")
    (skill / "ssh").symlink_to(home.home)
    usage_error(lambda: resolve("leaky"), skill / "ssh", "outside")


def test_symlink_to_a_sibling_skill_is_an_error(home, resolve, usage_error):
    other = home.skill("other")
    skill = home.skill("leaky")
    (skill / "borrowed.md").symlink_to(other / "SKILL.md")
    usage_error(lambda: resolve("leaky"), skill / "borrowed.md", "outside")


def test_symlink_inside_the_skill_is_dereferenced_when_packed(home, resolve):
    skill = home.skill("linked", files={"SKILL.md": "# linked", "docs/guide.md": "the guide"})
    (skill / "guide.md").symlink_to("docs/guide.md")
    (skill / "more").symlink_to("docs")
    host = resolve("linked")
    data = pack([PlanFile(host_path=host, guest_path="/home/agent/s", provider="t")], uid=1000, gid=1000,
                owned_below="/home/agent")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        link, linked_dir = tar.getmember("home/agent/s/guide.md"), tar.getmember("home/agent/s/more")
        assert link.isfile() and tar.extractfile(link).read() == b"the guide"
        assert linked_dir.isdir()
        assert tar.extractfile("home/agent/s/more/guide.md").read() == b"the guide"


def test_skill_dir_itself_may_be_a_symlink(home, resolve, tmp_path):
    real = tmp_path / "shared-skills" / "style"
    real.mkdir(parents=True)
    (real / "SKILL.md").write_text("# style")
    (home.project / ".bottle" / "skills").mkdir(parents=True)
    (home.project / ".bottle" / "skills" / "style").symlink_to(real)
    assert (resolve("style") / "SKILL.md").read_text() == "# style"


def test_dangling_symlink_is_an_error_at_plan_time(home, resolve, usage_error):
    # otherwise packing it fails only at launch, after the sandbox started
    skill = home.skill("dangling")
    (skill / "gone.md").symlink_to("nowhere.md")
    usage_error(lambda: resolve("dangling"), skill / "gone.md", "broken symlink")


@pytest.mark.parametrize("target", [".", "..", "../.."], ids=["own-dir", "parent", "skill-root"])
def test_symlink_loop_is_an_error_at_plan_time(home, resolve, usage_error, target):
    # following it (as pack does) would recurse until ELOOP at launch
    skill = home.skill("loop", files={"SKILL.md": "# loop", "a/b/file": "x"})
    (skill / "a" / "b" / "up").symlink_to(target)
    usage_error(lambda: resolve("loop"), skill / "a" / "b" / "up", "contains it")


def test_mutual_directory_symlinks_are_an_error_at_plan_time(home, resolve, usage_error):
    skill = home.skill("loop", files={"SKILL.md": "# loop", "a/x": "x", "b/y": "y"})
    (skill / "a" / "to-b").symlink_to("../b")
    (skill / "b" / "to-a").symlink_to("../a")
    usage_error(lambda: resolve("loop"), skill, "contains it")


def test_skill_in_repo_and_config_dir_is_an_error(home, resolve, usage_error, agent_file):
    repo = home.skill("twin", where="repo")
    user = home.skill("twin", where="config")
    usage_error(lambda: resolve("twin"), agent_file, "`skills`", repo, user, "twice")


def test_plan_orders_skills_as_the_agent_lists_them(home, plugins):
    for name in ("zeta", "alpha"):
        home.skill(name)
    home.agent("agent", skills=["zeta", "alpha"])
    plan = build_plan("agent", settings=load_settings(), plugins=plugins)
    assert [f.host_path.name for f in plan.files if f.provider == "skills"] == ["zeta", "alpha"]


def test_nested_symlink_inside_the_skill_is_fine(home, resolve):
    skill = home.skill("deep", files={"SKILL.md": "# deep", "x/y/z.md": "z"})
    os.symlink("z.md", skill / "x" / "y" / "alias.md")
    assert resolve("deep") == skill
