"""The host's Debian mirrors, read from its apt sources.

The base image is bootstrapped from the mirrors the host already uses, so it
works wherever the host's apt works (an internal mirror, a proxy) without bottle
naming any server itself. Both formats apt reads are understood: one-line
``sources.list`` files and deb822 ``*.sources`` files. Only Debian's own archive
is taken, recognised by its keyring or, for entries that name none, by a URI
path ending in ``/debian`` or ``/debian-security``; third-party repositories
are skipped because the image is a plain Debian base.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEBIAN_KEYRING = "debian-archive-keyring"
DEBIAN_PATHS = ("/debian", "/debian-security")
DEBIAN_COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")

_ONE_LINE = re.compile(r"^deb\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)(?P<components>.*)$")


@dataclass(frozen=True)
class Source:
    """One ``deb`` entry: a URI, a suite and its components."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str | None = None

    def line(self) -> str:
        """The entry as a one-line ``deb`` string, the form mmdebstrap takes as a mirror."""
        return " ".join(["deb", self.uri, self.suite, *self.components])


def debian_mirrors(suite: str, root: Path = Path("/")) -> list[str]:
    """One-line ``deb`` entries of the Debian archive for ``suite`` and its
    ``suite-*`` companions (updates, security), in the order apt lists them.

    A host lists its own release only, yet a Debian mirror serves every
    release: when no entry names ``suite``, the host's entries for its release
    are used with the suite's name put in (``bookworm-security`` becomes
    ``trixie-security``), so a bookworm host bootstraps trixie from its mirrors.
    """
    archive = [source for source in read_sources(root) if _is_debian_archive(source)]
    listed = [source for source in archive if _release(source.suite) == suite]
    if not listed:
        listed = [Source(source.uri, suite + source.suite[len(_release(source.suite)):], source.components)
                  for source in archive]
    lines: list[str] = []
    for source in listed:
        components = tuple(c for c in source.components if c in DEBIAN_COMPONENTS)
        line = Source(source.uri, source.suite, components).line()
        if components and line not in lines:
            lines.append(line)
    return lines


def _release(suite: str) -> str:
    """The release a suite belongs to: ``bookworm`` for ``bookworm-updates``."""
    return suite.partition("-")[0]


def read_sources(root: Path = Path("/")) -> list[Source]:
    """Every enabled binary (``deb``) entry under ``root``/etc/apt, in apt's file order."""
    apt = root / "etc" / "apt"
    sources: list[Source] = []
    if (apt / "sources.list").is_file():
        sources += _parse_one_line((apt / "sources.list").read_text())
    parts = apt / "sources.list.d"
    for path in sorted(parts.iterdir()) if parts.is_dir() else []:
        if path.suffix == ".list":
            sources += _parse_one_line(path.read_text())
        elif path.suffix == ".sources":
            sources += _parse_deb822(path.read_text())
    return sources


def _parse_one_line(text: str) -> list[Source]:
    sources = []
    for raw in text.splitlines():
        match = _ONE_LINE.match(raw.split("#", 1)[0].strip())
        if not match:
            continue
        options = dict(o.split("=", 1) for o in (match["options"] or "").split() if "=" in o)
        sources.append(
            Source(match["uri"], match["suite"], tuple(match["components"].split()), options.get("signed-by"))
        )
    return sources


def _parse_deb822(text: str) -> list[Source]:
    sources = []
    for stanza in _deb822_stanzas(text):
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                sources.append(Source(uri, suite, components, stanza.get("signed-by")))
    return sources


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Stanzas as lower-cased field names to values; continuation lines are
    joined so a multi-line field (an inline Signed-By key) stays one value."""
    stanzas: list[dict[str, str]] = []
    stanza: dict[str, str] = {}
    field = None
    for raw in text.splitlines() + [""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                stanzas.append(stanza)
            stanza, field = {}, None
        elif raw[0] in " \t" and field:
            stanza[field] += "\n" + raw.strip()
        elif ":" in raw:
            field, value = raw.split(":", 1)
            field = field.strip().lower()
            stanza[field] = value.strip()
    return stanzas


def _is_debian_archive(source: Source) -> bool:
    parts = urlsplit(source.uri)
    if parts.scheme not in ("http", "https"):
        return False
    if source.signed_by:
        return DEBIAN_KEYRING in source.signed_by
    return parts.path.rstrip("/").endswith(DEBIAN_PATHS)
