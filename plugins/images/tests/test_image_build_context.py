"""Build contexts hold the kind's Dockerfile, the CAs and (sidecar) bottle's sidecar package;
bad input is reported before any build; an image's labels say what it runs on and
whether this bottle runs it."""

import re
import tomllib
from pathlib import Path

import docker
import pytest
from rich.console import Console

import bottle_sidecar
from bottle.errors import EnvironmentProblem, UsageError
from bottle_images.bootstrap import mmdebstrap_command
from bottle_images.build import (
    FORMAT_LABEL,
    IMAGE_FORMATS,
    VERSION_LABEL,
    _follow,
    build_image,
    default_build_ca_certs,
    describe_versions,
    dockerfile,
    format_problem,
    pip_index_from_config,
    write_build_context,
)

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
    write_build_context(context, "agent", [first, second])
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "ca"]
    assert (context / "Dockerfile").read_text() == dockerfile("agent").read_text()
    assert sorted(p.name for p in (context / "ca").iterdir()) == ["00-proxy.crt", "01-proxy.crt"]
    assert (context / "ca" / "01-proxy.crt").read_text() == PEM


def test_sidecar_context_holds_the_installed_sidecar_package_without_bytecode(tmp_path):
    package = Path(bottle_sidecar.__path__[0])
    (package / "__pycache__").mkdir(exist_ok=True)  # importing bottle_sidecar may not have written one
    write_build_context(tmp_path, "sidecar", [])
    assert (tmp_path / "Dockerfile").read_text() == dockerfile("sidecar").read_text()
    copied = {p.relative_to(tmp_path / "lib" / "bottle_sidecar") for p in (tmp_path / "lib" / "bottle_sidecar").rglob("*")}
    assert {Path("__init__.py"), Path("init.py")} <= copied
    assert {p.relative_to(package) for p in package.glob("*.py")} <= copied
    assert not [p for p in copied if "__pycache__" in p.parts or p.suffix == ".pyc"]


def test_context_without_cas_has_an_empty_ca_dir(tmp_path):
    write_build_context(tmp_path, "agent", [])
    assert list((tmp_path / "ca").iterdir()) == []


def test_missing_ca_is_a_usage_error_naming_it(tmp_path):
    missing = tmp_path / "nope.crt"
    with pytest.raises(UsageError, match=str(missing)):
        write_build_context(tmp_path, "agent", [missing])


class NoImages:
    """A client with no local images; building must stop before asking for a build."""

    class images:
        @staticmethod
        def get(name):
            raise docker.errors.ImageNotFound(name)

    api = None


def build(tmp_path, kind, ca_certs):
    return build_image(
        NoImages(),
        kind=kind,
        tag=f"bottle/{kind}:test",
        base="debian:bookworm-slim",
        ca_certs=ca_certs,
        keep_ca=False,
        build_args={},
        console=Console(file=open(tmp_path / "out", "w")),
    )


@pytest.mark.parametrize("kind", ["agent", "sidecar"])
def test_missing_base_names_it_and_the_bootstrap_command(tmp_path, kind):
    with pytest.raises(EnvironmentProblem, match=r"debian:bookworm-slim.*bottle image bootstrap"):
        build(tmp_path, kind, [])


@pytest.mark.parametrize("kind", ["agent", "sidecar"])
def test_bad_ca_is_reported_before_the_engine_is_asked(tmp_path, kind):
    with pytest.raises(UsageError, match="nope.crt"):
        build(tmp_path, kind, [tmp_path / "nope.crt"])


def test_default_cas_are_the_crt_files_found_recursively(tmp_path):
    nested = make_cert(tmp_path / "corp" / "proxy.crt")
    top = make_cert(tmp_path / "a.crt")
    (tmp_path / "notes.txt").write_text("not a cert")
    assert default_build_ca_certs(tmp_path) == [top, nested]


@pytest.mark.parametrize("kind", ["agent", "sidecar"])
def test_dockerfiles_drop_the_cas_by_flattening(kind):
    text = dockerfile(kind).read_text()
    assert "FROM scratch" in text and "COPY --from=builder / /" in text
    assert "update-ca-certificates --fresh" in text
    assert f"LABEL bottle.image={kind}" in text


def test_agent_dockerfile_runs_claude_unprivileged():
    text = dockerfile("agent").read_text()
    assert "USER agent" in text and "DISABLE_AUTOUPDATER=1" in text


def test_sidecar_dockerfile_runs_the_copied_package_as_init():
    text = dockerfile("sidecar").read_text()
    assert "COPY lib/ /opt/bottle/lib/" in text and "PYTHONPATH=/opt/bottle/lib" in text
    assert '"python", "-m", "bottle_sidecar.init"]' in text
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in text and "PIP_NO_CACHE_DIR=1" in text


@pytest.mark.parametrize(
    ("config_list", "index"),
    [
        ("", None),
        ("global.cert='/etc/ssl/certs/ca-certificates.crt'\nglobal.extra-index-url='https://extra.example/simple'", None),
        ("global.index-url='https://mirror.example/simple'", "https://mirror.example/simple"),
        ("global.index-url='https://a.example/simple'\n:env:.index-url='https://b.example/simple'", "https://b.example/simple"),
        ("global.index-url='file:///opt/pypi/simple'", None),
    ],
)
def test_pip_index_is_the_last_index_url_the_build_can_reach(config_list, index):
    assert pip_index_from_config(config_list) == index


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


SIDECAR_LABELS = {
    "bottle.image": "sidecar", FORMAT_LABEL: str(IMAGE_FORMATS["sidecar"]),
    **{VERSION_LABEL + name: version for name, version in {
        "mcp": "2.3.0", "python": "3.13.5", "h11": "0.16.0", "debian": "trixie", "detect-secrets": "1.5.0",
        "mitmproxy": "12.3.1"}.items()},
}


def test_the_versions_read_in_a_fixed_order():
    assert describe_versions(SIDECAR_LABELS) == (
        "Debian trixie, Python 3.13.5, mitmproxy 12.3.1, h11 0.16.0, mcp 2.3.0, detect-secrets 1.5.0")


@pytest.mark.parametrize(("labels", "problem"), [
    (SIDECAR_LABELS, None),
    ({"bottle.image": "sidecar", "bottle.mitmproxy-version": "11.0.2"},
     f"it was built by an older bottle (image format 1; this bottle runs format {IMAGE_FORMATS['sidecar']})"),
    ({FORMAT_LABEL: "99"}, f"it was built by a newer bottle (image format 99; this bottle runs format "
                           f"{IMAGE_FORMATS['sidecar']})"),
    ({FORMAT_LABEL: "two"}, f"it was built by an older bottle (image format two; this bottle runs format "
                            f"{IMAGE_FORMATS['sidecar']})"),
])
def test_a_sidecar_image_of_another_format_is_refused(labels, problem):
    assert format_problem("sidecar", labels) == problem


def test_an_agent_image_has_no_format_to_check():
    assert format_problem("agent", {}) is None


def test_the_host_tests_sidecar_code_at_the_image_pins():
    """The [test] extra's sidecar libraries are the versions sidecar.Dockerfile installs."""
    pins = dict(re.findall(r"^ARG (\w+)_VERSION=(\S+)$", dockerfile("sidecar").read_text(), re.MULTILINE))
    extra = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    test = dict(r.split("==") for r in extra["project"]["optional-dependencies"]["test"] if "==" in r)
    assert test == {"detect-secrets": pins["DETECT_SECRETS"], "mcp": pins["MCP"]}
