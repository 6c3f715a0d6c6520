# The sidecar image: the per-bottle services (egress proxy, git gate, supervise
# server) on Debian's Python, started by bottle_sidecar.init.
#
# What goes in is what the loaded plugins' image parts declare (and the kit's
# own, bottle.sidecar.kit), unioned by bottle_images.parts into the context:
# apt.txt (Debian packages), requirements.txt (pip pins, installed in one
# resolution: pins that cannot live together fail here), lib/ (each part's
# packages, under their own names) and build.sh (each part's run commands, the
# kit's first, run as root in the image's own environment: the venv's python,
# PYTHONPATH=/opt/bottle/lib). Each pin's reason is next to it, in its part.
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

FROM ${BASE} AS builder

COPY ca/ /usr/local/share/ca-certificates/bottle-build/
RUN update-ca-certificates

COPY apt.txt /opt/bottle/parts/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(cat /opt/bottle/parts/apt.txt) \
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
# the venv afterwards: nothing installs at run time. requirements.txt stays: it
# is what python -m bottle_sidecar.versions reports the installed versions of.
ARG PIP_INDEX=
COPY requirements.txt /opt/bottle/parts/
RUN export PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
           REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
           PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
 && if [ -n "$PIP_INDEX" ]; then export PIP_INDEX_URL="$PIP_INDEX"; fi \
 && python3 -m venv /opt/bottle/venv \
 && /opt/bottle/venv/bin/pip install -r /opt/bottle/parts/requirements.txt \
 && /opt/bottle/venv/bin/pip uninstall -y pip setuptools \
 && rm -rf /root/.cache /tmp/*

COPY lib/ /opt/bottle/lib/
COPY build.sh /opt/bottle/parts/
RUN PATH=/opt/bottle/venv/bin:$PATH PYTHONPATH=/opt/bottle/lib sh /opt/bottle/parts/build.sh \
 && python3 -m compileall -q /opt/bottle/lib

ARG KEEP_CA=0
RUN if [ "$KEEP_CA" != 1 ]; then \
      rm -rf /usr/local/share/ca-certificates/bottle-build && update-ca-certificates --fresh; \
    fi

# The versions actually installed (python -m bottle_sidecar.versions), each
# part's digest and the image's format are labels that bottle writes once the
# image is built.
FROM scratch
COPY --from=builder / /
ENV PATH=/opt/bottle/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/bottle/lib \
    PYTHONUNBUFFERED=1
LABEL bottle.image=sidecar
USER sidecar
ENTRYPOINT ["tini", "--", "python", "-m", "bottle_sidecar.init"]
