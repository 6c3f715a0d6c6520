"""The egress plugin (entry point ``egress``): the sidecar's proxy, the bottle's only way to the outside.

- ``[egress]`` and ``[[credentials]]`` are its profile tables (``bottle_egress.tables``);
- its plan section (``bottle_egress.section``) holds the policy, with each
  credential's name and placeholder but never its value;
- it runs the proxy as the sidecar service ``egress`` and, at launch, makes
  the bottle's CA (its key goes to the sidecar's tmpfs, its certificate to the
  state dir, for the ``ca`` provisioner), writes the policy and hands the
  credential values to the sidecar alone;
- the agent's environment holds each routed credential's placeholder;
- ``bottle egress allow|deny`` change a running bottle's allowlist.

Supervise asks for an approval to be carried out through the hook it
publishes, ``bottle_supervise_grant``; this answers for ``egress`` proposals
by putting the host on the bottle's live allowlist, and imports nothing of
supervise (the hook is optional: this loads whether supervise does or not).
"""

import json

from bottle import hookimpl
from bottle_egress import commands
from bottle_egress.image_part import bottle_sidecar_image_parts  # noqa: F401 -- the proxy's image part

UPSTREAM_CA = "/run/bottle/upstream-ca.pem"
READY = "bottle-egress: listening"


@hookimpl
def bottle_register_commands(app):
    app.add_typer(commands.app, name="egress")
    app.command("usage")(commands.usage)


@hookimpl
def bottle_describe(plan):
    """``bottle ls``'s column: the tokens the bottle used so far, in all its runs."""
    from bottle_egress.section import EgressPlan
    from bottle_egress.usage import usage_of

    if plan.section(EgressPlan) is None:
        return None
    total, _ = usage_of(plan.state_dir)
    return {"tokens": str(total.total)}


@hookimpl
def bottle_register_profile_tables(register):
    from bottle_egress.tables import TABLES  # pydantic: not for `bottle --help`

    register(*TABLES)


@hookimpl
def bottle_register_settings(register):
    from bottle_egress.settings import EgressSettings  # pydantic: not for `bottle --help`

    register(EgressSettings)


@hookimpl
def bottle_plan_section(ctx):
    from bottle_egress.section import CredentialPlan, EgressPlan

    from bottle_egress.policy_file import with_live_budget, with_live_changes
    from bottle_egress.settings import DEFAULT_PRICES

    egress = ctx.profile.table("egress")
    before = ctx.previous.section(EgressPlan) if ctx.previous is not None else None
    return EgressPlan(
        allow=with_live_changes(ctx.state_dir, before, egress.allow),
        secret_patterns=egress.secret_patterns,
        trust=egress.trust,
        on_secret=egress.secret_modes(),
        secret_exempt=egress.secret_exempt,
        credentials=tuple(CredentialPlan(**route.model_dump(), placeholder=route.placeholder)
                          for route in ctx.profile.table("credentials")),
        ca_cert=ctx.state_dir / "ca.pem",
        budget=with_live_budget(ctx.state_dir, before, ctx.profile.table("budget")),
        prices=getattr(ctx.settings, "model_prices", None) or DEFAULT_PRICES,  # settings read without ours: the defaults
    )


@hookimpl
def bottle_plan_env(ctx):
    """The agent sees only placeholders for routed credentials, whatever the agent or profile env said."""
    from bottle_egress.section import EgressPlan

    egress = ctx.section(EgressPlan)
    return {route.env: route.placeholder for route in egress.credentials} if egress else None


@hookimpl
def bottle_sidecar_services(ctx):
    from bottle.sidecar.service import AUDIT, CREDENTIALS, RUN_DIR, SidecarService
    from bottle_egress.policy_file import POLICY
    from bottle_egress.section import EgressPlan

    egress = ctx.section(EgressPlan)
    if egress is None:
        return None
    argv = [
        "python", "-m", "bottle_egress_sidecar.main",
        "--listen-host", "0.0.0.0", "--listen-port", str(egress.proxy_port),
        "--confdir", f"{RUN_DIR}/mitmproxy", "--policy", POLICY, "--credentials", CREDENTIALS, "--audit", AUDIT,
    ]
    if egress.trust:
        argv += ["--upstream-extra-ca", UPSTREAM_CA]
    return [SidecarService(name="egress", argv=tuple(argv), ready=READY, port=egress.proxy_port, part="egress")]


@hookimpl
def bottle_sidecar_prepare(plan, sidecar):
    from bottle.sidecar.service import RUN_DIR, SecretRef
    from bottle_egress.authority import generate_ca
    from bottle_egress.policy_file import POLICY_FILE, policy_document
    from bottle_egress.section import EgressPlan

    egress = plan.section(EgressPlan)
    if egress is None:
        return
    files = ", ".join(map(str, plan.profile_files))
    for route in egress.credentials:
        sidecar.secret(SecretRef(name=route.env, env=route.env, what=(
            f"Profile {plan.profile!r} ({files}): field `credentials`: the credential for {route.host}")))
    ca = generate_ca(plan.slug)
    egress.ca_cert.write_bytes(ca.cert_pem)
    sidecar.tmpfs_file(f"{RUN_DIR}/mitmproxy/mitmproxy-ca.pem", (ca.key_pem + ca.cert_pem).decode())
    sidecar.state_file(POLICY_FILE, json.dumps(policy_document(plan.slug, egress, egress.allow), indent=2))
    if egress.trust:
        sidecar.tmpfs_file(UPSTREAM_CA, "".join(path.read_text() for path in egress.trust), 0o644)


@hookimpl(optionalhook=True)
def bottle_supervise_grant(bottle, kind, value):
    if kind == "budget":  # "raise the budget to N tokens": value is N
        from bottle_egress.usage import change_budget

        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"a budget is a whole number of tokens, not {value!r}")
        change_budget(bottle, int(value), None, by="an approved proposal")
        return f"{value} tokens"
    if kind != "egress":
        return None
    from bottle_egress import allowlist  # the Docker SDK: not for `bottle --help`
    from bottle_egress_sidecar.policy import parse_rule

    rule = parse_rule(value).text  # a RuleError is a ValueError: the desk says where the host came from
    allowlist.change_allowlist(bottle, rule, allow=True)
    return rule
