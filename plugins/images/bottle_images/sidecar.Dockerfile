# The sidecar image: the per-bottle daemons (egress proxy, git gate, supervise
# server) on Debian's Python, started by bottle_sidecar.init.
#
# Built like agent.Dockerfile (read its header): a "builder" stage trusts the
# build CAs in ca/ to reach apt and the Python package index, removes them at
# the end (unless KEEP_CA=1), and the final stage copies its file system into an
# empty image, so no layer holds them.
#
# By default everything runs as the unprivileged user "sidecar", whose uid and
# gid (65531, no host account's) are SIDECAR_UID in bottle/sidecar_runtime.py.
# bottle runs the container as that user when it runs as root, else as the
# invoking user, with every capability dropped either way, and mounts a tmpfs
# on /run/bottle for the secrets the init writes from its config. tini is PID 1
# so that orphans are reaped and signals reach the init.

ARG BASE=debian:trixie-slim
# Each version is one this code was tested with (tests/integration/test_sidecar_image.py
# asserts them from inside the built image, with h11's floor).
# mitmproxy 12 needs Python 3.12 or later: Debian 13 (trixie) has 3.13, Debian 12 only 3.11.
ARG MITMPROXY_VERSION=12.3.1
# h11, mitmproxy's HTTP/1 parser, pinned on its own: 0.16.0 fixed CVE-2025-43859
# (lenient chunked-body parsing, a request-smuggling primitive); naming it here
# keeps a later mitmproxy or mcp pin from bringing an older parser back.
ARG H11_VERSION=0.16.0
ARG DETECT_SECRETS_VERSION=1.5.0
# The supervise server's MCP SDK: 2.x (MCPServer), which needs h11 0.16 like mitmproxy 12;
# 1.x held mitmproxy at 11 through h11. Installed with mitmproxy in one resolution.
ARG MCP_VERSION=2.3.0

FROM ${BASE} AS builder

COPY ca/ /usr/local/share/ca-certificates/bottle-build/
RUN update-ca-certificates

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates git openssh-client procps python3 python3-venv tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c 'import sys; sys.exit(sys.version_info < (3, 12) and "the sidecar needs Python 3.12 or later \
(mitmproxy 12): build it on Debian 13 (bottle image bootstrap --suite trixie)")'

RUN groupadd --system --gid 65531 sidecar \
 && useradd --system --no-log-init --uid 65531 --gid sidecar --home-dir /var/lib/bottle --shell /usr/sbin/nologin sidecar \
 && install -d -o sidecar -g sidecar -m 0700 /var/lib/bottle /run/bottle

# Each ARG is declared just before the step using it (see agent.Dockerfile).
# pip and requests trust only certifi's CA list unless told; point them at the
# system bundle, which now has the extras. pip and setuptools are removed from
# the venv afterwards: nothing installs at run time.
ARG MITMPROXY_VERSION
ARG H11_VERSION
ARG DETECT_SECRETS_VERSION
ARG MCP_VERSION
ARG PIP_INDEX=
RUN export PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
           REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
           PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
 && if [ -n "$PIP_INDEX" ]; then export PIP_INDEX_URL="$PIP_INDEX"; fi \
 && python3 -m venv /opt/bottle/venv \
 && /opt/bottle/venv/bin/pip install \
      "mitmproxy==${MITMPROXY_VERSION}" "h11==${H11_VERSION}" "detect-secrets==${DETECT_SECRETS_VERSION}" \
      "mcp==${MCP_VERSION}" \
 && /opt/bottle/venv/bin/pip uninstall -y pip setuptools \
 && /opt/bottle/venv/bin/mitmdump --version \
 && rm -rf /root/.cache /tmp/*

# detect-secrets' patterns are copied into a module (bottle_sidecar/_detect_secrets_frozen.py)
# so that the proxy runs without importing detect-secrets and requests (6 MB resident).
COPY lib/ /opt/bottle/lib/
RUN PYTHONPATH=/opt/bottle/lib /opt/bottle/venv/bin/python -m bottle_sidecar.secrets_scan --freeze \
 && python3 -m compileall -q /opt/bottle/lib

ARG KEEP_CA=0
RUN if [ "$KEEP_CA" != 1 ]; then \
      rm -rf /usr/local/share/ca-certificates/bottle-build && update-ca-certificates --fresh; \
    fi

# The versions actually installed, and the image's format, are labels that
# bottle writes once the image is built (python -m bottle_sidecar.versions).
FROM scratch
COPY --from=builder / /
ENV PATH=/opt/bottle/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/bottle/lib \
    PYTHONUNBUFFERED=1
LABEL bottle.image=sidecar
USER sidecar
ENTRYPOINT ["tini", "--", "python", "-m", "bottle_sidecar.init"]
