"""Provisioner ``ca``: the guest trusts the bottle's CA and sends its traffic to the sidecar.

All of the agent's TLS goes through the egress proxy, which re-signs every
certificate with the per-bottle CA; so the guest's system bundle is
*replaced* by that one certificate (the agent trusts nothing else), and the
usual variables point every TLS stack (Node, OpenSSL, Python requests, git,
curl) at it. The CA's key never leaves the host and the sidecar.

Nothing here needs a running sandbox: the files travel with the plan's single
copy, before any provision hook runs, which is how the ``ca`` provisioner
"runs first".
"""

from bottle import hookimpl

NAME = "ca"
GUEST_CA = "/usr/local/share/ca-certificates/bottle-ca.crt"
GUEST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_VARIABLES = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")
LOCAL = "localhost,127.0.0.1,::1"


@hookimpl
def bottle_plan_files(ctx):
    from bottle.plan import PlanFile  # pydantic: not for `bottle --help`
    from bottle_egress.section import EgressPlan

    egress = ctx.section(EgressPlan)
    if egress is None:  # no proxy, no CA: the bottle has no way out at all
        return None
    cert = egress.ca_cert
    return [
        PlanFile(host_path=cert, guest_path=GUEST_CA, provider=NAME, root_owned=True),
        PlanFile(host_path=cert, guest_path=GUEST_BUNDLE, provider=NAME, root_owned=True),
    ]


@hookimpl
def bottle_plan_env(ctx):
    from bottle_egress.section import EgressPlan

    egress = ctx.section(EgressPlan)
    if egress is None:
        return None
    proxy = egress.proxy_url(ctx.sidecar)
    env = {name: GUEST_CA for name in CA_VARIABLES}
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        env[name] = env[name.lower()] = proxy
    # The sidecar's own services (git gate, supervise) are reached directly.
    env["NO_PROXY"] = env["no_proxy"] = f"{LOCAL},{ctx.sidecar.hostname}"
    return env
