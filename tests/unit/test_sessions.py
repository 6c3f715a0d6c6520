"""What a stopped bottle's state dir says (``bottle.sessions``) and what ``bottle resume`` shows as changed
(``bottle.cli.lifecycle.differences``), without an engine."""

import json

import pytest

from bottle.cli.lifecycle import differences
from bottle.errors import UsageError
from bottle.prepare import build_plan
from bottle.sessions import Inputs, age, check_name, parse_duration, stored, stored_bottles
from bottle.settings import load_settings


def plan(plugins, **kwargs):
    return build_plan("worker", settings=load_settings(extensions=plugins.settings_extensions), plugins=plugins,
                      headless_prompt="hi", **kwargs)


def keep(plan_, created: float) -> None:
    plan_.state_dir.mkdir(parents=True)
    (plan_.state_dir / "plan.json").write_text(plan_.model_dump_json())
    Inputs(agent=str(plan_.agent_file), created=created).write(plan_.state_dir)


def test_stored_bottles_are_found_oldest_first_and_read_back(home, plugins):
    home.agent("worker")
    first, second = plan(plugins, slug="b-2"), plan(plugins, slug="a-1")
    keep(first, 100.0)
    keep(second, 200.0)
    (home.state_root / "supervise").mkdir()  # a plugin's shared files: no bottle

    found = stored_bottles()

    assert [bottle.slug for bottle in found] == ["b-2", "a-1"]
    assert found[0].plan() == first and found[0].inputs.agent == str(first.agent_file)
    assert stored("a-1").plan().slug == "a-1"
    for slug in ("nope", "../a-1", "supervise", ""):
        with pytest.raises(UsageError, match="No bottle"):
            stored(slug)


def test_a_resumed_plan_keeps_the_slug_and_shows_only_what_the_user_changed(home, plugins):
    home.agent("worker")
    home.profile("default", 'memory = "2g"\n[egress]\nallow = ["x.example"]\n')
    before = plan(plugins, slug="w-1")
    home.profile("default", 'memory = "1g"\n[egress]\nallow = ["x.example", "y.example"]\n')
    home.agent("worker", "A new prompt.")

    after = plan(plugins, previous=before, agent_args=("--verbose",))

    assert (after.slug, after.state_dir, after.resume) == ("w-1", before.state_dir, True)
    assert "--continue" in after.agent_argv
    assert differences(before, after) == [
        "resources.memory: '2g' -> '1g'",
        "sections.egress.allow.1: (none) -> 'y.example'",
        "the agent's prompt changed",
    ]


def test_names_durations_and_ages():
    assert check_name("my-bottle.1") == "my-bottle.1"
    for bad in ("Bad", "-x", "a" * 41, "a/b", ""):
        with pytest.raises(UsageError, match="is not a bottle name"):
            check_name(bad)
    assert [parse_duration(text, "--x") for text in ("90s", "30m", "12h", "7d")] == [90, 1800, 43200, 604800]
    with pytest.raises(UsageError, match="Option --since: '7 days' is not a duration"):
        parse_duration("7 days", "--since")
    assert [age(seconds) for seconds in (5, 61, 7200, 200000)] == ["5s", "1m", "2h", "2d"]


def test_a_name_already_taken_is_refused(home, plugins):
    home.agent("worker")
    keep(plan(plugins, slug="taken"), 1.0)
    with pytest.raises(UsageError, match="there is a bottle 'taken' already"):
        check_name("taken")



def test_ls_lists_a_record_whose_plan_this_bottle_cannot_read(home, plugins, monkeypatch, capsys):
    from bottle.cli import manage

    home.agent("worker")
    old = plan(plugins, slug="old-1")
    keep(old, 1.0)
    (old.state_dir / "plan.json").write_text('{"made by": "an older bottle"}')
    monkeypatch.setattr(manage, "all_bottles", lambda: [])  # no backend lists it: only its record is left

    manage.ls(as_json=True)

    (row,) = json.loads(capsys.readouterr().out)
    assert (row["slug"], row["status"], row["agent"], row["details"]) == ("old-1", "gone", "", {})
