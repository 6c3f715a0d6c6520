# The sidecar image plus what its tests need, to run them on the sidecar's own
# Python and libraries (tests/integration/test_sidecar_image.py builds it from
# the image under test and mounts the repository at /src).
#
# Built like bottle's images (bottle_images.build): the build CAs in ca/ are
# trusted to reach apt and the package index. The test requirements (bottle's
# own dependencies and its [test] extra, in requirements.txt) are installed into
# the sidecar's venv under a constraint of everything already there: a test
# dependency that wants another version of what the sidecar runs on fails the
# build instead of changing what is tested. Then bottle and its plugins are
# installed without dependencies, for their entry points (their code comes
# from /src, first on PYTHONPATH).

ARG SIDECAR
FROM ${SIDECAR}
USER root

COPY ca/ /usr/local/share/ca-certificates/bottle-build/
RUN update-ca-certificates

# curl: the guest's supervise hook client, which the supervise tests run.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

ARG PIP_INDEX=
COPY requirements.txt /opt/bottle-test/requirements.txt
RUN export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && if [ -n "$PIP_INDEX" ]; then export PIP_INDEX_URL="$PIP_INDEX"; fi \
 && python -m ensurepip \
 && python -m pip freeze > /opt/bottle-test/sidecar-constraints.txt \
 && python -m pip install -c /opt/bottle-test/sidecar-constraints.txt -r /opt/bottle-test/requirements.txt setuptools

COPY dist/ /opt/bottle-test/dist/
RUN cd /opt/bottle-test/dist \
 && python -m pip install --no-deps --no-build-isolation ./core $(find plugins -name pyproject.toml -printf '%h ')

# The repository's code comes first: the core, then each distribution under plugins/.
ENV PYTHONPATH=/src/core:/src/plugins/provisioners/egress:/src/plugins/provisioners/git:/src/plugins/provisioners/supervise:/src/plugins/provisioners/basics:/src/plugins/images:/src/plugins/backend_docker:/src/plugins/backend_smolvm:/opt/bottle/lib \
    PYTHONDONTWRITEBYTECODE=1 \
    BOTTLE_TEST_IN_SIDECAR_IMAGE=1
WORKDIR /src
ENTRYPOINT []
