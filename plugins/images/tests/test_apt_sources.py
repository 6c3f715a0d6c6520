"""The host's Debian mirrors are found in both apt source formats, and only those."""

from pathlib import Path

from bottle_images.apt_sources import debian_mirrors, read_sources

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def write(root: Path, relative: str, text: str) -> None:
    path = root / "etc/apt" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_one_line_format(tmp_path):
    write(
        tmp_path,
        "sources.list",
        "# a comment\n"
        "deb http://mirror.example/debian bookworm main contrib  # trailing comment\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        f"deb [arch=amd64 signed-by={KEYRING}] http://mirror.example/debian-security bookworm-security main\n",
    )
    assert debian_mirrors("bookworm", tmp_path) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]


def test_deb822_format_expands_uris_and_suites(tmp_path):
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        "Types: deb deb-src\n"
        "# a comment inside the stanza\n"
        "URIs: http://mirror.example/debian https://other.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main non-free-firmware\n"
        f"Signed-By: {KEYRING}\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: trixie\n"
        "Components: main\n",
    )
    assert debian_mirrors("bookworm", tmp_path) == [
        "deb http://mirror.example/debian bookworm main non-free-firmware",
        "deb http://mirror.example/debian bookworm-updates main non-free-firmware",
        "deb https://other.example/debian bookworm main non-free-firmware",
        "deb https://other.example/debian bookworm-updates main non-free-firmware",
    ]
    assert debian_mirrors("trixie", tmp_path) == ["deb http://mirror.example/debian trixie main"]


def test_debian_keyring_makes_any_path_an_archive(tmp_path):
    write(
        tmp_path,
        "sources.list.d/internal.sources",
        f"Types: deb\nURIs: http://apt.corp.example/mirrors/deb/\nSuites: bookworm\nComponents: main\nSigned-By: {KEYRING}\n",
    )
    assert debian_mirrors("bookworm", tmp_path) == ["deb http://apt.corp.example/mirrors/deb/ bookworm main"]


def test_third_party_sources_are_skipped(tmp_path):
    write(
        tmp_path,
        "sources.list.d/vendor.sources",
        "Types: deb\nURIs: https://vendor.example/linux/debian\nSuites: bookworm\nComponents: stable\n"
        "Signed-By: /usr/share/keyrings/vendor.gpg\n",
    )
    write(
        tmp_path,
        "sources.list.d/inline.sources",
        "Types: deb\nURIs: https://inline.example/debian\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n",
    )
    write(
        tmp_path,
        "sources.list.d/old.list",
        "deb [signed-by=/usr/share/keyrings/old.gpg] https://old.example/debian bookworm main\n"
        "deb https://unsigned.example/apt bookworm main\n"
        "deb https://unsigned.example/debian bookworm stable\n",
    )
    assert debian_mirrors("bookworm", tmp_path) == []
    assert len(read_sources(tmp_path)) == 5


def test_disabled_stanzas_and_other_files_are_ignored(tmp_path):
    write(
        tmp_path,
        "sources.list.d/off.sources",
        "Enabled: no\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n",
    )
    write(tmp_path, "sources.list.d/x.list.disabled", "deb http://mirror.example/debian bookworm main\n")
    assert debian_mirrors("bookworm", tmp_path) == []


def test_duplicates_are_listed_once_and_missing_config_is_empty(tmp_path):
    assert debian_mirrors("bookworm", tmp_path) == []
    line = "deb http://mirror.example/debian bookworm main\n"
    write(tmp_path, "sources.list", line + line)
    assert debian_mirrors("bookworm", tmp_path) == [line.strip()]


def test_suite_companions_only_not_prefix_lookalikes(tmp_path):
    write(
        tmp_path,
        "sources.list",
        "deb http://mirror.example/debian bookworm-backports main\n"
        "deb http://mirror.example/debian bookwormish main\n",
    )
    assert debian_mirrors("bookworm", tmp_path) == ["deb http://mirror.example/debian bookworm-backports main"]


def test_a_release_the_host_does_not_list_comes_from_the_mirrors_of_its_own(tmp_path):
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        f"Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        f"Signed-By: {KEYRING}\n\n"
        f"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
        f"Signed-By: {KEYRING}\n\n"
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: bookworm\nComponents: stable\n",
    )
    assert debian_mirrors("trixie", tmp_path) == [
        "deb http://mirror.example/debian trixie main",
        "deb http://mirror.example/debian trixie-updates main",
        "deb http://mirror.example/debian-security trixie-security main",
    ]
