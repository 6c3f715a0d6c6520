"""Find token-shaped secrets in outgoing requests, and say where, never what.

The patterns are detect-secrets' regex detectors (AWS, GitHub, GitLab, Slack,
private keys, JWT, ...), a few token formats it lacks or matches slowly
(Anthropic, fine-grained GitHub, npm, Google, Stripe), and the profile's own
``secret_patterns``. A hit names the detector, the place (``url``, ``header
NAME``, ``body``) and an offset, so the audit log can say why a request was
stopped without repeating the secret. Where the policy says so, the proxy has
the secrets replaced instead (:meth:`Scanner.redact`), each by a marker such as
``[bottle:redacted:aws-access-key:1]`` that names its detector and stays the
same for that secret as long as the bottle runs (:class:`Markers`).

Not secrets: the credential placeholders, the vendors' documented example keys
(``EXAMPLE_KEYS``) and the values a profile exempts; a profile may also turn
detectors off.

Left out of detect-secrets: the keyword and entropy detectors, and the
assignment-style ones built like them (Cloudant, IBM, SoftLayer), which flag
ordinary code and run at 10-30 MB/s each; IPPublicDetector (an address is not
a secret); NpmDetector, whose ``//.+/:_authToken`` is quadratic on a one-line
JSON body; and Artifactory, Mailchimp, Telegram, Discord and Stripe, whose
patterns begin with a character class or an alternation: fine against one
line of code, but tried at every byte of a body (50-200 MB/s each).

Speed decides the shape. Python's regex engine finds a pattern that starts
with a literal (``AKIA``, ``ghp_``, ``BEGIN``) at memchr speed, some 3 GB/s,
and bodies are scanned whole, in C, with no loop over lines. Joined into one
alternation the patterns would lose those literal starts and crawl at
~20 MB/s; a case-insensitive pattern loses its literal start the same way. So
each pattern is its own regex, compiled case-sensitively (issuers fix the case
of their prefixes: ``xoxb-``, ``AKIA``), except that patterns of one detector
that begin alike share a regex. A scan is some 25 passes over the data, about
100 MB/s in all on a small VM (the target is 50).

The sidecar image copies detect-secrets' patterns into a module when it is
built (``python -m bottle_sidecar.secrets_scan --freeze``), so that the proxy
does not import detect-secrets (and ``requests``) to run: only a match loads
the plugin that vets it. Elsewhere the patterns are read from detect-secrets.
"""

import bisect
import functools
import hashlib
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .policy import detector_id

# detect-secrets' plugins used, as MODULE.CLASS under detect_secrets.plugins.
DETECT_SECRETS = (
    "aws.AWSKeyDetector", "azure_storage_key.AzureStorageKeyDetector", "basic_auth.BasicAuthDetector",
    "github_token.GitHubTokenDetector", "gitlab_token.GitLabTokenDetector", "jwt.JwtTokenDetector",
    "openai.OpenAIDetector", "private_key.PrivateKeyDetector", "pypi_token.PypiTokenDetector",
    "sendgrid.SendGridDetector", "slack.SlackDetector", "square_oauth.SquareOAuthDetector",
    "twilio.TwilioKeyDetector",
)
FROZEN = Path(__file__).with_name("_detect_secrets_frozen.py")
EXTRA = (
    ("Anthropic API Key", rb"sk-ant-(?:api|admin|oat|ort)\d\d-[A-Za-z0-9_-]{20,}"),
    ("GitHub Fine-Grained Token", rb"github_pat_[A-Za-z0-9_]{60,}"),
    ("npm Token", rb"npm_[A-Za-z0-9]{36}"),
    ("Google API Key", rb"AIza[0-9A-Za-z_-]{35}"),
    ("Stripe Access Key", rb"sk_live_[0-9a-zA-Z]{24,}"),
    ("Stripe Access Key", rb"rk_live_[0-9a-zA-Z]{24,}"),
)
# Detectors whose patterns carry the secret in a capture group, after context
# that is no part of it: a keyword and a quote (aws_secret_access_key = "..."),
# or ``://user:`` before a password. Elsewhere a group is part of the token
# (GitHub's ``(ghp|gho|...)_``), and the secret is the whole match.
SECRET_IN_GROUP = frozenset({"aws.AWSKeyDetector", "basic_auth.BasicAuthDetector"})

# Keys the vendors publish as examples, found in docs, tutorials and test
# fixtures; never anyone's credential.
EXAMPLE_KEYS = (
    # AWS Command Line Interface User Guide, "Configuration basics" and the
    # named-profiles example: access key IDs and secret access keys.
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    # Microsoft, "Use the Azurite emulator for local Azure Storage development":
    # the well-known account key of devstoreaccount1, as a connection string has it.
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
)
_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_BACKSLASH = ord("\\")


@dataclass(frozen=True)
class Hit:
    """Where a secret was seen; deliberately without the secret."""

    detector: str
    location: str  # "url", "header NAME", "body", or what the caller named
    offset: int

    def __str__(self) -> str:
        return f"{self.detector} in {self.location} at offset {self.offset}"


@dataclass(frozen=True)
class _Detector:
    name: str
    regex: re.Pattern[bytes]
    confirm: Callable[[str], bool] | None = None  # a detector's own veto on a match
    whole_word: bool = True  # see _glued; the profile's own patterns match as written
    in_group: bool = False  # the secret is the capture group that matched (SECRET_IN_GROUP)


class Markers:
    """The marker that stands for each secret redacted: ``[bottle:redacted:DETECTOR:N]``.

    N counts the distinct secrets of that detector, so the Messages API, which
    is sent the whole conversation again with every request, sees the same
    marker for a secret every time: the conversation stays consistent. One
    instance serves a proxy's life, which is its bottle's. A secret is
    remembered by its SHA-256 only, and at most ``LIMIT`` of them (memory stays
    bounded whatever the agent sends; past that, a secret seen again gets a new number).
    Markers hold no quote, backslash or newline: JSON, headers and URLs stay valid.
    """

    LIMIT = 65536

    def __init__(self) -> None:
        self._known: dict[bytes, bytes] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, detector: str, secret: bytes) -> bytes:
        key = hashlib.sha256(secret).digest()
        marker = self._known.get(key)
        if marker is None:
            number = self._counts[detector] = self._counts.get(detector, 0) + 1
            marker = f"[bottle:redacted:{detector_id(detector)}:{number}]".encode()
            if len(self._known) < self.LIMIT:
                self._known[key] = marker
        return marker


@dataclass(frozen=True)
class Redacted:
    """A request's URL, headers and body as :meth:`Scanner.redact_request` left them, and what it replaced."""

    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    hits: list[Hit]


@functools.cache
def _plugin(name: str):
    """An instance of detect-secrets' plugin *name* (see DETECT_SECRETS)."""
    module, _, cls = name.rpartition(".")
    return getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)()


def detect_secrets_patterns() -> list[tuple[str, str, str, int]]:
    """(plugin, secret type, regex source, flags) for each regex made from detect-secrets' plugins.

    A plugin's patterns that begin alike are joined into one: the engine
    searches for their common literal start in one pass (GitLab's seven
    patterns take three passes, the private keys' eight take two). Reads
    detect-secrets, which the sidecar image does once, at build time (see
    :func:`freeze`): imported, it and ``requests`` would hold some 6 MB of the
    proxy's memory for as long as it runs.
    """
    patterns = []
    for name in DETECT_SECRETS:
        plugin = _plugin(name)
        groups: dict[tuple[str, int], list[str]] = {}
        for regex in plugin.denylist:
            flags = regex.flags & re.VERBOSE  # the one flag besides IGNORECASE that they use
            groups.setdefault((regex.pattern[:2], flags), []).append(f"(?:{regex.pattern})")
        patterns += [(name, plugin.secret_type, "|".join(sources), flags) for (_, flags), sources in groups.items()]
    return patterns


def freeze(path: Path = FROZEN) -> None:
    """Write detect_secrets_patterns() to *path* as a module, once it is checked to read back the same."""
    from importlib.metadata import version

    patterns = [(plugin, kind, source, int(flags)) for plugin, kind, source, flags in detect_secrets_patterns()]
    text = (
        f"# Written by `python -m {__spec__.name} --freeze` from detect-secrets {version('detect-secrets')}.\n"
        "# Do not edit; do not commit (the sidecar image makes it when it is built).\n"
        f"PATTERNS = {patterns!r}\n"
    )
    namespace: dict = {}
    exec(compile(text, str(path), "exec"), namespace)
    if namespace["PATTERNS"] != patterns:
        raise SystemExit(f"the patterns would not read back from {path} as written")
    path.write_text(text)


def _builtin() -> tuple[_Detector, ...]:
    try:
        from ._detect_secrets_frozen import PATTERNS
    except ImportError:  # not in the sidecar image: read detect-secrets itself
        PATTERNS = detect_secrets_patterns()
    detectors = []
    for plugin, kind, source, flags in PATTERNS:
        regex = re.compile(source.encode(), flags)
        in_group = plugin in SECRET_IN_GROUP and regex.groups > 0
        detectors.append(_Detector(kind, regex, functools.partial(_confirm, plugin), in_group=in_group))
    return tuple(detectors + [_Detector(name, re.compile(pattern)) for name, pattern in EXTRA])


def _confirm(plugin: str, text: str) -> bool:
    """The plugin's own analyze_string vets a match: JwtTokenDetector, for one,
    drops "eyJ..." strings whose parts do not decode. The plugin (and with it
    detect-secrets) is loaded on the first match only, which in the sidecar is
    a request about to be blocked."""
    return any(True for _ in _plugin(plugin).analyze_string(text))


BUILTIN = _builtin()


def _glued(data: bytes, start: int) -> bool:
    """Whether the match at *start* begins inside a longer run of letters and digits.

    Tokens stand apart from what precedes them. Inside base64 (a screenshot
    in a Messages API body, say) a short prefix followed by enough base64
    letters turns up by chance: ``AIza`` plus 35 of them about every 50 MB.
    Requiring the start of a word makes that 30 times rarer. A JSON escape
    (``\\nAKIA...``) ends a word.
    """
    if start == 0 or data[start] not in _WORD or data[start - 1] not in _WORD:
        return False
    return not (start >= 2 and data[start - 2] == _BACKSLASH)


def _escaped(data: bytes, at: int) -> bool:
    """Whether the byte at *at* is escaped: an odd run of backslashes right before it."""
    run = 0
    while at - run > 0 and data[at - run - 1] == _BACKSLASH:
        run += 1
    return run % 2 == 1


def _outside_escapes(data: bytes, start: int, end: int) -> tuple[int, int]:
    """The span *start*:*end* widened so that it neither begins nor ends inside a
    backslash escape (``\\"``, ``\\\\``, ``\\u00e9``): replaced by a marker, a JSON
    string stays one string. Only spans at such an edge move, by a few bytes."""
    for back in range(1, 6):  # \X with the span at X, or \uXXXX with the span in its digits
        at = start - back
        if at < 0 or data[at] != _BACKSLASH or _escaped(data, at):
            continue
        if back == 1 or (data[at + 1] == ord("u") and all(byte in _HEX for byte in data[at + 2:start])):
            start = at
            break
    if end < len(data) and data[end - 1] == _BACKSLASH and not _escaped(data, end - 1):
        end += 1  # the span ends with a backslash that escapes what follows it
    return start, end


class Scanner:
    """Scans requests with the built-in detectors plus *patterns* ((name, bytes
    regex) pairs), except the detectors named in *exempt_detectors* (names or
    ids, see ``policy.parse_detector``).

    Nothing inside one of *exempt_values* is a secret: the credential
    placeholders (the agent may hold and send those, and the proxy replaces
    them anyway), what the profile exempts, and always ``EXAMPLE_KEYS``.
    """

    def __init__(self, patterns: Iterable[tuple[str, re.Pattern[bytes]]] = (), exempt_values: Iterable[str] = (),
                 exempt_detectors: Iterable[str] = ()):
        off = {detector_id(name) for name in exempt_detectors}
        detectors = BUILTIN + tuple(_Detector(name, regex, whole_word=False) for name, regex in patterns)
        self._detectors = tuple(detector for detector in detectors if detector_id(detector.name) not in off)
        self._exempt = tuple(value.encode() for value in (*EXAMPLE_KEYS, *exempt_values))

    def _found(self, data: bytes) -> Iterator[tuple[str, int, int, int]]:
        """(detector, start of the match, start and end of the secret) for each secret in *data*, detector by
        detector: :meth:`scan` stops at the first, :meth:`redact` takes all, and with no secret both cost the same."""
        for detector in self._detectors:
            for match in detector.regex.finditer(data):
                if detector.whole_word and _glued(data, match.start()):
                    continue
                start, end = match.span(match.lastindex) if detector.in_group and match.lastindex else match.span()
                secret = data[start:end]
                if not secret or any(secret in value for value in self._exempt):
                    continue
                if detector.confirm and not detector.confirm(match.group().decode("latin-1")):
                    continue
                yield detector.name, match.start(), start, end

    def scan(self, data: bytes, location: str = "body") -> Hit | None:
        """The first secret in *data*, or None."""
        for name, offset, _, _ in self._found(data):
            return Hit(name, location, offset)
        return None

    def redact(self, data: bytes, location: str, markers: Markers) -> tuple[bytes, list[Hit]]:
        """*data* with every secret replaced by its marker, and a hit for each (its offset in *data* as given).

        Secrets that overlap (two detectors on one token) are replaced as one,
        named by the detector of the first. Each span is kept out of backslash
        escapes (see :func:`_outside_escapes`).
        """
        spans = sorted((*_outside_escapes(data, start, end), name) for name, _, start, end in self._found(data))
        merged: list[list] = []
        for start, end, name in spans:
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end, name])
        if not merged:
            return data, []
        pieces, done = [], 0
        for start, end, name in merged:
            pieces += [data[done:start], markers(name, data[start:end])]
            done = end
        pieces.append(data[done:])
        return b"".join(pieces), [Hit(name, location, start) for start, _, name in merged]

    def scan_request(self, url: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Hit | None:
        """The first secret in the URL, a header value or the body, or None.

        The URL and the headers go through as one small text (one pass per
        pattern, not one per header); the offset is mapped back to its part.
        Headers the proxy adds itself are not here to be scanned: it scans
        before it injects.
        """
        return self._head_hit(url, headers) or self.scan(body)

    def _head_hit(self, url: bytes, headers: Iterable[tuple[bytes, bytes]]) -> Hit | None:
        parts = [("url", url)] + [(_header(name), value) for name, value in headers]
        starts, position = [], 0
        for _, value in parts:
            starts.append(position)
            position += len(value) + 1
        hit = self.scan(b"\n".join(value for _, value in parts))
        if hit is not None:
            index = bisect.bisect_right(starts, hit.offset) - 1
            return Hit(hit.detector, parts[index][0], hit.offset - starts[index])
        return None

    def redact_request(self, url: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes,
                       markers: Markers) -> Redacted:
        """What :meth:`scan_request` scans, with every secret replaced by its marker.

        The URL and the headers are scanned together first, as there, and
        one by one only when that found something.
        """
        headers = list(headers)
        hits: list[Hit] = []
        if self._head_hit(url, headers) is not None:
            url, hits = self.redact(url, "url", markers)
            for index, (name, value) in enumerate(headers):
                value, found = self.redact(value, _header(name), markers)
                headers[index] = (name, value)
                hits += found
        body, found = self.redact(body, "body", markers)
        return Redacted(url, headers, body, hits + found)


def _header(name: bytes) -> str:
    """Where a hit in the header *name* is: ``header NAME``, lower case."""
    return f"header {name.decode('latin-1').lower()}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--freeze"]:
        raise SystemExit(f"usage: python -m {__spec__.name} --freeze  (writes {FROZEN.name} next to this module)")
    freeze()
