"""The kit's part of the sidecar image, the labels that say which parts an image holds, and the image's
report of the versions its parts' pins installed."""

import re

import pytest

from bottle.sidecar.kit import KIT_NAME, PARTS_LABEL, image_lacks, kit_part, part_digest, part_labels
from bottle.sidecar.service import ImagePart
from bottle_sidecar.versions import requirement_names, versions

PROXY = ImagePart(name="proxy", packages=("proxy_sidecar",), pip=("h11==0.16.0",), apt=("git",))


def test_the_kit_part_holds_the_kit_and_freezes_the_scanners_patterns():
    kit = kit_part()
    assert kit.name == KIT_NAME and kit.packages == ("bottle_sidecar",)
    assert kit.pip == ("detect-secrets==1.5.0", "hyperscan==0.9.1; platform_machine == 'x86_64'")
    assert {"python3", "python3-venv", "tini"} <= set(kit.apt)
    assert kit.run == ("python -m bottle_sidecar.secrets_scan --freeze",)


def test_the_core_declares_the_kit_part_as_its_essential_plugins(plugins):
    assert kit_part() in [part for parts in plugins.hook.bottle_sidecar_image_parts() for part in parts]
    assert "bottle_sidecar_image_parts" in {info.name: info for info in plugins.info()}["core"].hooks


def test_a_digest_is_of_the_parts_declaration_and_changes_with_any_field():
    digest = part_digest(PROXY)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert part_digest(ImagePart(**PROXY.model_dump())) == digest
    for change in ({"pip": ("h11==0.15.0",)}, {"apt": ()}, {"run": ("true",)}, {"packages": ()}, {"name": "other"}):
        assert part_digest(PROXY.model_copy(update=change)) != digest, change


def test_an_image_labelled_with_the_parts_lacks_none():
    labels = {"bottle.image": "sidecar", **part_labels([kit_part(), PROXY])}
    assert labels[PARTS_LABEL + "proxy"] == part_digest(PROXY)
    assert image_lacks(labels, [kit_part(), PROXY]) == []
    assert image_lacks(labels, [PROXY]) == []


@pytest.mark.parametrize(("labels", "lacks"), [
    ({}, ["kit", "proxy"]),
    ({PARTS_LABEL + "kit": "sha256:0"}, ["kit", "proxy"]),
    ({PARTS_LABEL + "proxy": part_digest(PROXY)}, ["kit"]),
])
def test_an_image_lacks_the_parts_it_has_no_label_for_or_another_digest_of(labels, lacks):
    assert image_lacks(labels, [kit_part(), PROXY]) == lacks


def test_the_requirements_name_their_distributions_in_order():
    text = ("# the parts' pins\n\nmitmproxy==12.3.1\nh11==0.16.0  # CVE-2025-43859\n--no-binary :all:\n"
            "detect_secrets==1.5.0\n")
    assert requirement_names(text) == ["mitmproxy", "h11", "detect_secrets"]


def test_the_image_reports_what_every_requirement_installed(tmp_path):
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    (tmp_path / "requirements.txt").write_text("pytest==0\nno-such-distribution==1\n")
    found = versions(str(tmp_path / "os-release"), str(tmp_path / "requirements.txt"))
    assert list(found) == ["debian", "python", "pytest", "no-such-distribution"]
    assert found["debian"] == "trixie" and found["pytest"] == pytest.__version__
    assert found["no-such-distribution"] is None
