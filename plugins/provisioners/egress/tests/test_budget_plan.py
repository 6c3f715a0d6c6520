"""A profile's ``[budget]`` in the plan and in the sidecar's policy, what a resumed bottle keeps of it, and
``bottle usage`` and ``bottle egress budget`` reading and changing it (no engine)."""

from bottle.prepare import build_plan
from bottle.settings import load_settings
from bottle.sidecar.runtime import audit_path
from bottle_egress.policy_file import policy_document, policy_path, write_policy
from bottle_egress.section import EgressPlan
from bottle_egress.usage import change_budget, usage_of
from bottle_sidecar.audit import AuditLog, read_events


def plan(home, plugins, **kwargs):
    settings = load_settings(extensions=plugins.settings_extensions)
    return build_plan("worker", settings=settings, plugins=plugins, headless_prompt="hi", **kwargs)


def test_the_budget_reaches_the_policy_with_the_prices(home, plugins):
    home.agent("worker")
    home.profile("default", '[egress]\nallow = ["x.example"]\n[budget]\nmax_tokens = 5000\n')
    egress = plan(home, plugins).section(EgressPlan)

    document = policy_document("w-1", egress, egress.allow)

    assert document["budget"] == {"max_tokens": 5000, "max_usd": None, "per": "bottle"}
    assert document["prices"]["claude-sonnet-4"]["output_tokens"] == 15


def test_without_a_budget_the_policy_has_none_and_the_prices_all_the_same(home, plugins):
    home.agent("worker")
    home.profile("default", '[egress]\nallow = ["x.example"]\n')
    egress = plan(home, plugins).section(EgressPlan)
    document = policy_document("w-1", egress, egress.allow)
    assert "budget" not in document and document["prices"]["claude-opus-4-5"]["input_tokens"] == 5


def test_a_budget_raised_live_stays_raised_on_resume(home, plugins):
    home.agent("worker")
    home.profile("default", '[egress]\nallow = ["x.example"]\n[budget]\nmax_tokens = 5000\nmax_usd = 2.0\n')
    first = plan(home, plugins, slug="w-1")
    egress = first.section(EgressPlan)
    first.state_dir.mkdir(parents=True)
    policy_path(first.state_dir).parent.mkdir()
    write_policy(first.state_dir, policy_document("w-1", egress, egress.allow))
    audit_path(first.state_dir).touch()

    assert change_budget("w-1", 12000, None, by="a test")["max_tokens"] == 12000

    again = plan(home, plugins, previous=first).section(EgressPlan)
    assert (again.budget.max_tokens, again.budget.max_usd) == (12000, 2.0)
    events = read_events(audit_path(first.state_dir))
    assert [(e["source"], e["decision"], e["reason"]) for e in events] == [("operator", "budget-changed", "a test")]


def test_usage_sums_what_the_sidecar_metered_by_model(tmp_path):
    audit_path(tmp_path).parent.mkdir()
    log = AuditLog(audit_path(tmp_path), "w-1")
    for model, tokens, usd in (("claude-a", 100, 0.5), ("claude-b", 7, None), ("claude-a", 20, 0.25)):
        log.record("egress", "metered", detail={"model": model, "input_tokens": tokens, "output_tokens": 1,
                                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                                 "usd": usd})
    log.record("egress", "allowed", detail={})
    log.close()

    total, models = usage_of(tmp_path)

    assert total.as_dict() == {"requests": 3, "input_tokens": 127, "output_tokens": 3, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0, "total_tokens": 130, "usd": 0.75}
    assert models["claude-a"].total == 122 and models["claude-b"].usd is None


def test_bad_budgets_name_the_field(home, plugins, usage_error):
    home.agent("worker")
    for toml, said in (("[budget]\nmax_tokens = 0\n", "budget.max_tokens"),
                       ('[budget]\nmax_tokens = "many"\n', "budget.max_tokens"),
                       ("[budget]\nper = \"run\"\n", "a budget needs max_tokens, max_usd or both")):
        home.profile("default", '[egress]\nallow = ["x.example"]\n' + toml)
        usage_error(lambda: plan(home, plugins), said)
