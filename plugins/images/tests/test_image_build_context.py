"""Build contexts hold the kind's Dockerfile, the CAs and (sidecar) the union of the plugins' image parts;
bad input is reported before any build; an image's labels say what it runs on, which parts it holds and
whether this bottle runs it."""

import json
import re
import tomllib
from pathlib import Path

import docker
import pytest
from rich.console import Console

import bottle_sidecar
from bottle.errors import EnvironmentProblem, UsageError
from bottle.sidecar.kit import kit_part, part_labels
from bottle.sidecar.service import ImagePart
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
from bottle_images.parts import loaded_parts, pin_of, requirements, union

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
    write_build_context(tmp_path, "sidecar", [], [kit_part()])
    assert (tmp_path / "Dockerfile").read_text() == dockerfile("sidecar").read_text()
    copied = {p.relative_to(tmp_path / "lib" / "bottle_sidecar") for p in (tmp_path / "lib" / "bottle_sidecar").rglob("*")}
    assert {Path("__init__.py"), Path("init.py")} <= copied
    assert {p.relative_to(package) for p in package.glob("*.py")} <= copied
    assert not [p for p in copied if "__pycache__" in p.parts or p.suffix == ".pyc"]


PROXY = ImagePart(name="proxy", packages=("bottle_sidecar",), pip=("h11==0.16.0", "detect-secrets==1.5.0"),
                  apt=("git", "tini"), run=("proxy --version",))
DESK = ImagePart(name="desk", pip=("mcp==2.3.0",), apt=("git",), run=("desk --check", "desk --warm"))


def test_the_sidecar_context_is_the_union_of_the_parts(tmp_path):
    write_build_context(tmp_path, "sidecar", [], union([PROXY, kit_part(), DESK, PROXY]))
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["bottle_sidecar"]
    assert (tmp_path / "requirements.txt").read_text().splitlines() == [
        *kit_part().pip, "mcp==2.3.0", "h11==0.16.0"]
    apt = (tmp_path / "apt.txt").read_text().splitlines()
    assert apt[:len(kit_part().apt)] == list(kit_part().apt) and apt[len(kit_part().apt):] == ["git"]
    assert (tmp_path / "build.sh").read_text().splitlines() == [
        "set -eux", "# kit", *kit_part().run, "# desk", "desk --check", "desk --warm", "# proxy", "proxy --version"]


def test_the_parts_go_in_with_the_kit_first_then_by_name():
    assert [part.name for part in union([PROXY, DESK, kit_part()])] == ["kit", "desk", "proxy"]


def test_the_loaded_plugins_declare_the_kit_and_each_service_they_run():
    parts = loaded_parts()
    assert [part.name for part in parts] == ["kit", "egress", "gitgate", "supervise"]
    assert {name for part in parts for name in part.packages} == {
        "bottle_sidecar", "bottle_egress_sidecar", "bottle_gitgate_sidecar", "bottle_supervise_sidecar"}


def test_a_part_declared_twice_differently_is_an_error_naming_it_and_what_differs():
    with pytest.raises(EnvironmentProblem, match=r"part 'proxy' is declared twice, with different apt: "
                                                 r"\('git', 'tini'\) and \('git',\)\. Disable one"):
        union([PROXY, PROXY.model_copy(update={"apt": ("git",)})])


@pytest.mark.parametrize(("pip", "problem"), [
    (("h11>=0.16",), r"part 'desk' asks pip for 'h11>=0.16': its requirements must be pinned, as name==version"),
    (("mcp",), r"part 'desk' asks pip for 'mcp': its requirements must be pinned"),
    (("H11==0.14.0",), r"parts 'proxy' and 'desk' pin H11 differently \(h11==0.16.0 and H11==0.14.0\)"),
])
def test_a_requirement_unpinned_or_pinned_apart_from_another_parts_is_an_error_naming_the_parts(pip, problem):
    with pytest.raises(EnvironmentProblem, match=problem):
        requirements([PROXY, DESK.model_copy(update={"pip": pip})])


def test_a_pin_may_say_which_machines_it_is_for():
    marked = "hyperscan==0.9.1; platform_machine == 'x86_64'"
    assert requirements([DESK.model_copy(update={"pip": (marked,)})]) == [marked]
    with pytest.raises(EnvironmentProblem, match="must be pinned"):
        requirements([DESK.model_copy(update={"pip": ("hyperscan; platform_machine == 'x86_64'",)})])


def test_one_pin_asked_by_two_parts_is_installed_once():
    assert requirements([PROXY, DESK.model_copy(update={"pip": ("detect_secrets==1.5.0",)})]) == [
        "h11==0.16.0", "detect-secrets==1.5.0"]


def test_a_part_naming_a_package_not_installed_here_is_an_error_naming_both(tmp_path):
    for package in ("no_such_package_here", "bottle_sidecar.versions"):
        (tmp_path / package).mkdir()
        with pytest.raises(EnvironmentProblem, match=rf"part 'desk' names the package '{package}', which is not "):
            write_build_context(tmp_path / package, "sidecar", [], [DESK.model_copy(update={"packages": (package,)})])


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


def build(tmp_path, kind, ca_certs, client=None):
    return build_image(
        client or NoImages(),
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


class Builds:
    """A client whose builds succeed: it keeps each build's context files and the labels asked for."""

    def __init__(self, inside: dict[str, str]):
        self.contexts: list[dict[str, str]] = []
        self.labels: dict[str, str] = {}
        self.api = self
        self.images = self.containers = self
        self.inside = inside

    def get(self, name):
        return type("Image", (), {"id": "sha256:0"})

    def build(self, path=None, fileobj=None, **_):
        if fileobj is None:
            self.contexts.append({p.name: p.read_text() for p in Path(path).iterdir() if p.is_file()})
        else:
            label_line = fileobj.read().decode().splitlines()[1].removeprefix("LABEL ")
            self.labels = dict(tuple(json.loads(value) for value in pair.split("=", 1))
                               for pair in label_line.split(" "))
        return iter([{"stream": "Step 1/1 : FROM x\n"}])

    def run(self, tag, entrypoint, **_):
        return json.dumps(self.inside).encode()


def test_a_sidecar_build_is_of_the_loaded_parts_and_labelled_with_their_digests(tmp_path):
    inside = {"debian": "trixie", "python": "3.13.5", "detect-secrets": "1.5.0"}
    client = Builds(inside)
    build(tmp_path, "sidecar", [], client)
    (context,) = client.contexts
    assert context["requirements.txt"].splitlines() == requirements(loaded_parts())
    assert client.labels == {**{VERSION_LABEL + name: value for name, value in inside.items()},
                             **part_labels(loaded_parts()), FORMAT_LABEL: str(IMAGE_FORMATS["sidecar"])}


def test_an_agent_build_has_no_parts_and_no_labels_added(tmp_path):
    client = Builds({})
    build(tmp_path, "agent", [], client)
    (context,) = client.contexts
    assert sorted(context) == ["Dockerfile"] and client.labels == {}


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


def test_sidecar_dockerfile_installs_what_the_parts_wrote_and_pins_nothing_itself():
    text = dockerfile("sidecar").read_text()
    for name in ("apt.txt", "requirements.txt", "build.sh"):
        assert f"COPY {name} /opt/bottle/parts/" in text
    assert "pip install -r /opt/bottle/parts/requirements.txt" in text
    assert "$(cat /opt/bottle/parts/apt.txt)" in text and "sh /opt/bottle/parts/build.sh" in text
    assert "==" not in text and not re.search(r"^ARG \w+_VERSION", text, re.MULTILINE)


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


def test_the_versions_read_the_suite_and_python_first_then_by_name():
    assert describe_versions(SIDECAR_LABELS) == (
        "Debian trixie, Python 3.13.5, detect-secrets 1.5.0, h11 0.16.0, mcp 2.3.0, mitmproxy 12.3.1")


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
    """The [test] extra's sidecar libraries are the versions the image's parts pin."""
    pins = dict(map(pin_of, requirements(loaded_parts())))
    extra = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    test = dict(filter(None, map(pin_of, extra["project"]["optional-dependencies"]["test"])))
    assert {"detect-secrets", "hyperscan", "mcp"} <= test.keys()
    assert test == {name: pins.get(name) for name in test}
