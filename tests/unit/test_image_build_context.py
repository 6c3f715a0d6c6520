"""The agent build context holds the Dockerfile and the CAs, and bad input is reported before any build."""

from pathlib import Path

import docker
import pytest
from rich.console import Console

from bottle.errors import EnvironmentProblem, UsageError
from bottle.images.bootstrap import mmdebstrap_command
from bottle.images.build import DOCKERFILE, _follow, build_agent_image, default_build_ca_certs, write_build_context

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def make_cert(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PEM)
    return path


def test_context_holds_dockerfile_and_numbered_cas(tmp_path):
    first = make_cert(tmp_path / "a" / "proxy.crt")
    second = make_cert(tmp_path / "b" / "proxy.pem")
    context = tmp_path / "context"
    context.mkdir()
    write_build_context(context, [first, second])
    assert (context / "Dockerfile").read_text() == DOCKERFILE.read_text()
    assert sorted(p.name for p in (context / "ca").iterdir()) == ["00-proxy.crt", "01-proxy.crt"]
    assert (context / "ca" / "01-proxy.crt").read_text() == PEM


def test_context_without_cas_has_an_empty_ca_dir(tmp_path):
    write_build_context(tmp_path, [])
    assert list((tmp_path / "ca").iterdir()) == []


def test_missing_ca_is_a_usage_error_naming_it(tmp_path):
    missing = tmp_path / "nope.crt"
    with pytest.raises(UsageError, match=str(missing)):
        write_build_context(tmp_path, [missing])


class NoImages:
    """A client with no local images; building must stop before asking for a build."""

    class images:
        @staticmethod
        def get(name):
            raise docker.errors.ImageNotFound(name)

    api = None


def build(tmp_path, ca_certs):
    return build_agent_image(
        NoImages(),
        tag="bottle/agent:test",
        base="debian:bookworm-slim",
        ca_certs=ca_certs,
        keep_ca=False,
        claude_code_version="2.1.332",
        npm_registry=None,
        console=Console(file=open(tmp_path / "out", "w")),
    )


def test_missing_base_names_it_and_the_bootstrap_command(tmp_path):
    with pytest.raises(EnvironmentProblem, match=r"debian:bookworm-slim.*bottle image bootstrap"):
        build(tmp_path, [])


def test_bad_ca_is_reported_before_the_engine_is_asked(tmp_path):
    with pytest.raises(UsageError, match="nope.crt"):
        build(tmp_path, [tmp_path / "nope.crt"])


def test_default_cas_are_the_crt_files_found_recursively(tmp_path):
    nested = make_cert(tmp_path / "corp" / "proxy.crt")
    top = make_cert(tmp_path / "a.crt")
    (tmp_path / "notes.txt").write_text("not a cert")
    assert default_build_ca_certs(tmp_path) == [top, nested]


def test_dockerfile_drops_the_cas_by_flattening():
    text = DOCKERFILE.read_text()
    assert "FROM scratch" in text and "COPY --from=builder / /" in text
    assert "update-ca-certificates --fresh" in text
    assert "USER agent" in text and "DISABLE_AUTOUPDATER=1" in text


def test_mmdebstrap_command_uses_the_given_mirrors(tmp_path):
    mirrors = ["deb http://mirror.example/debian bookworm main"]
    command = mmdebstrap_command("bookworm", tmp_path / "rootfs.tar", mirrors)
    assert command[:3] == ["mmdebstrap", "--variant=minbase", "--include=ca-certificates"]
    assert command[-3:] == ["bookworm", str(tmp_path / "rootfs.tar"), *mirrors]


def test_build_failure_names_the_step_and_the_output_tail(tmp_path):
    stream = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> abc123\n"},
        {"stream": "Step 2/3 : RUN npm install\n"},
        {"stream": "\x1b[91mnpm\x1b[0m"},
        {"stream": "\x1b[91m ERR! code SELF_SIGNED_CERT_IN_CHAIN\n\x1b[0m"},
        {"stream": "Removing intermediate container 0123\n"},
        {"error": "The command '/bin/sh -c npm install'\n returned a non-zero code: 1", "errorDetail": {}},
    ]
    with pytest.raises(EnvironmentProblem) as caught:
        _follow(iter(stream), tag="t", console=Console(file=open(tmp_path / "out", "w")))
    assert str(caught.value) == (
        "building t failed at Step 2/3: The command '/bin/sh -c npm install' returned a non-zero code: 1\n"
        "npm ERR! code SELF_SIGNED_CERT_IN_CHAIN"
    )
