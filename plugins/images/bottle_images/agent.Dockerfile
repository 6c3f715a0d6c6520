# The agent image: Claude Code on Debian, run as the unprivileged user "agent".
#
# Built by bottle (build.py) with the engine's classic builder, which has no
# build secrets or mounts. The extra CA certificates in ca/ (a TLS-intercepting
# proxy's) are needed to reach apt and npm during the build, yet must not ship
# in the image, not even in a lower layer. So everything happens in a "builder"
# stage that trusts them, removes them at the end (unless KEEP_CA=1), and the
# final stage copies its file system into an empty image: one layer, without
# the CAs, and without the builder's history.

ARG BASE=debian:bookworm-slim

FROM ${BASE} AS builder

COPY ca/ /usr/local/share/ca-certificates/bottle-build/
RUN update-ca-certificates

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl git nodejs npm procps \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid agent --create-home --home-dir /home/agent --shell /bin/bash agent \
 && install -d -o agent -g agent /workspace

# Each ARG is declared just before the step using it: the classic builder makes
# every declared ARG part of the cache key of all later RUN steps.
ARG CLAUDE_CODE_VERSION
ARG NPM_REGISTRY=
# npm trusts only its own CA list unless told; point it (and the package's
# postinstall, a node script) at the system bundle, which now has the extras.
# The postinstall links the native binary for this platform into bin/; the
# platform packages are then dead weight, and Debian's npm, ignoring their libc
# field, installs the musl build too (~400 MB), so they are removed. The
# postinstall leaves a stub, exiting 0, when it finds no binary: running
# `claude --version` fails the build instead.
RUN export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
           npm_config_cafile=/etc/ssl/certs/ca-certificates.crt \
 && if [ -n "$NPM_REGISTRY" ]; then export npm_config_registry="$NPM_REGISTRY"; fi \
 && npm install -g "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
 && rm -rf "$(npm root -g)"/@anthropic-ai/claude-code/node_modules/@anthropic-ai/claude-code-* \
 && claude --version \
 && npm cache clean --force \
 && rm -rf /root/.npm /tmp/*

ARG KEEP_CA=0
RUN if [ "$KEEP_CA" != 1 ]; then \
      rm -rf /usr/local/share/ca-certificates/bottle-build && update-ca-certificates --fresh; \
    fi

FROM scratch
ARG CLAUDE_CODE_VERSION
COPY --from=builder / /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DISABLE_AUTOUPDATER=1
LABEL bottle.image=agent \
      bottle.claude-code-version=${CLAUDE_CODE_VERSION}
USER agent
WORKDIR /workspace
CMD ["claude"]
