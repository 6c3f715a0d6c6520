"""The sidecar image bottle runs: what it runs on, read from inside it; the
sidecar's own unit tests, run inside it; and ``bottle run`` refusing one an
older bottle built.

The image is the ``sidecar_image`` setting (``BOTTLE_SIDECAR_IMAGE``). The
unit tests of what runs in the sidecar (``SIDECAR_ONLY`` and ``SIDECAR_SHARED``
in ``tests/support/collection.py``) run in a container of a test image made from it
(``tests/support/sidecar_test.Dockerfile``: the image plus pytest and bottle's
host-side dependencies, which may not change what the sidecar runs on), with
this repository mounted read-only at /src: a host on Python 3.11 still tests
the code on the Python and the libraries it runs with.
"""

import json
import os
import re
import shutil
import tomllib
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from rich.console import Console

from bottle.sidecar.kit import PARTS_LABEL, image_lacks, part_labels
from bottle_images.build import (
    FORMAT_LABEL, IMAGE_FORMATS, build_context, default_build_ca_certs, host_pip_index, image_versions,
    write_ca_certs,
)
from bottle_images.parts import loaded_parts, pin_of, requirements
from tests.support.collection import require, sidecar_test_files

REPO = Path(__file__).parents[2]
TEST_DOCKERFILE = REPO / "tests" / "support" / "sidecar_test.Dockerfile"
#: h11 0.16.0 fixed CVE-2025-43859 (lenient chunked-body parsing): no pin may go below it.
H11_FIXED = (0, 16)
MITMPROXY_NEEDS_PYTHON = (3, 12)
SUITE_TIMEOUT = 1200


def numeric(version: str) -> tuple[int, ...]:
    """The leading numbers of a version: (0, 16, 0) for 0.16.0, (3, 13, 5) for 3.13.5."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def part_pins() -> dict[str, str]:
    """The loaded plugins' image parts' pip pins: the versions this bottle asks for, by distribution."""
    return dict(map(pin_of, requirements(loaded_parts())))


@pytest.fixture(scope="module")
def sidecar_image(engine):
    from docker.errors import ImageNotFound

    from bottle.settings import Settings

    tag = Settings().sidecar_image
    try:
        return engine.images.get(tag)
    except ImageNotFound:
        require(False, f"sidecar image {tag} is not built (run `bottle image bootstrap && bottle image build`)")


@pytest.fixture(scope="module")
def inside(engine, sidecar_image) -> dict[str, str]:
    """What the image reports it runs on, from inside it."""
    output = engine.containers.run(sidecar_image.id, entrypoint=["python", "-m", "bottle_sidecar.versions"],
                                   remove=True, network_disabled=True)
    return json.loads(output)


def test_the_image_runs_the_pinned_parser_proxy_and_sdk_on_debian_13(inside):
    pins = part_pins()
    assert {"mitmproxy", "h11", "mcp", "detect-secrets", "hyperscan"} <= pins.keys()
    assert numeric(inside["h11"]) >= H11_FIXED, f"h11 {inside['h11']} has CVE-2025-43859"
    assert {name: inside[name] for name in pins} == pins
    assert numeric(inside["mitmproxy"])[0] == 12 and numeric(inside["mcp"])[0] == 2
    assert numeric(inside["python"]) >= MITMPROXY_NEEDS_PYTHON
    assert inside["debian"] == "trixie"


def test_the_labels_say_what_is_inside_and_the_format_this_bottle_runs(sidecar_image, inside):
    assert image_versions(sidecar_image.labels) == inside
    assert sidecar_image.labels[FORMAT_LABEL] == str(IMAGE_FORMATS["sidecar"])


def test_the_labels_name_each_loaded_part_at_its_digest(sidecar_image):
    parts = loaded_parts()
    assert image_lacks(sidecar_image.labels, parts) == []
    assert {key: value for key, value in sidecar_image.labels.items() if key.startswith(PARTS_LABEL)} == (
        part_labels(parts))


def write_test_context(directory: Path) -> None:
    """The test image's build context: its Dockerfile, the build CAs, the
    requirements (bottle's and its plugins' dependencies and the [test] extra),
    and each distribution's metadata with its packages as empty stubs, installed
    for their entry points: the code itself is only ever the mounted /src."""
    shutil.copyfile(TEST_DOCKERFILE, directory / "Dockerfile")
    write_ca_certs(directory, default_build_ca_certs())
    requirements = set()
    for project in [REPO, *sorted(path.parent for path in (REPO / "plugins").glob("**/pyproject.toml"))]:
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        requirements |= {r for r in meta.get("dependencies", []) if not r.startswith("bottle")}
        requirements |= set(meta.get("optional-dependencies", {}).get("test", []))
        target = directory / "dist" / ("core" if project == REPO else project.relative_to(REPO))
        for name in ["pyproject.toml", *([meta["readme"]] if "readme" in meta else [])]:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project / name, target / name)
        for stub in package_stubs(project):
            (target / stub).parent.mkdir(parents=True)
            (target / stub).write_text("")
    (directory / "requirements.txt").write_text("\n".join(sorted(requirements)) + "\n")


def package_stubs(project: Path) -> list[str]:
    """Where the distribution's top-level packages begin: their __init__.py, relative to *project*."""
    packages = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    if isinstance(packages, list):
        return [f"{name}/__init__.py" for name in packages]
    return [init.relative_to(project).as_posix()
            for root in packages["find"]["where"] for init in sorted((project / root).glob("*/__init__.py"))]


@pytest.fixture(scope="module")
def test_image(engine, sidecar_image, tmp_path_factory) -> str:
    """The test image made from the image under test, tagged by that image's id."""
    context = tmp_path_factory.mktemp("sidecar-test-context")
    write_test_context(context)
    tag = f"bottle/sidecar-test:{sidecar_image.id.removeprefix('sha256:')[:12]}"
    build_context(engine, context, tag=tag, console=Console(stderr=True),
                  build_args={"SIDECAR": sidecar_image.id, "PIP_INDEX": host_pip_index() or ""})
    return tag


def test_the_sidecar_unit_tests_pass_inside_the_image(engine, test_image, inside, tmp_path, report):
    files = [path.relative_to(REPO).as_posix() for path in sidecar_test_files(REPO)]
    container = engine.containers.run(
        test_image,
        ["python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--junitxml=/out/junit.xml", *files],
        detach=True,
        network_mode="none",  # the tests serve and reach loopback only
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp", "CI": os.environ.get("CI", "")},
        volumes={str(REPO): {"bind": "/src", "mode": "ro"}, str(tmp_path): {"bind": "/out", "mode": "rw"}},
    )
    try:
        status = container.wait(timeout=SUITE_TIMEOUT)
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    tail = "\n".join(output.splitlines()[-80:])
    assert status["StatusCode"] == 0, f"the sidecar's tests failed inside {test_image}:\n{tail}"
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, tail)
    report(f"sidecar unit tests inside {test_image} (Debian {inside['debian']}, Python {inside['python']}, "
           f"mitmproxy {inside['mitmproxy']}, h11 {inside['h11']}, mcp {inside['mcp']}): "
           f"{counts['tests']} passed in {float(suite.get('time')):.0f} s, from {len(files)} files")


def test_bottle_run_refuses_a_sidecar_image_an_older_bottle_built(engine, sidecar_image, home, api_profile):
    import io

    old = f"bottle/sidecar:old-format-{uuid.uuid4().hex[:8]}"
    engine.images.build(fileobj=io.BytesIO(f"FROM {sidecar_image.id}\nLABEL {FORMAT_LABEL}=1\n".encode()), tag=old,
                        rm=True)
    try:
        home.env["BOTTLE_SIDECAR_IMAGE"] = old
        home.profile("default", api_profile())
        home.agent("hello", "Say hello.")

        result = home.run("run", "hello", "--prompt", "hi")
    finally:
        engine.images.remove(old)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith(
        f"bottle: The sidecar image {old!r} cannot run with this bottle: it was built by an older bottle (image "
        f"format 1; this bottle runs format {IMAGE_FORMATS['sidecar']}). Run `bottle image build --only sidecar "
        f"--sidecar-tag {old}` (and `bottle image bootstrap` first where no registry is reachable).\n"
    )


def test_doctor_shows_what_the_sidecar_image_runs_on(inside, home):
    from bottle.settings import Settings

    tag = Settings().sidecar_image
    home.env["BOTTLE_SIDECAR_IMAGE"] = tag

    text, report = home.run("doctor"), home.run("doctor", "--json")

    assert text.returncode == 0, text.stderr
    assert (f"Debian {inside['debian']}, Python {inside['python']}, detect-secrets {inside['detect-secrets']}, "
            f"h11 {inside['h11']}, hyperscan {inside['hyperscan']}, mcp {inside['mcp']}, "
            f"mitmproxy {inside['mitmproxy']}") in text.stdout
    image = json.loads(report.stdout)["images"][tag]
    assert (image["versions"], image["problem"]) == (inside, None)
