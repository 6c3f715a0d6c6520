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

What is scanned: a request's *names* (the host as the client wrote it, the
TLS SNI and ALPN offers, the Host header, the method, every header's name;
:meth:`Scanner.scan_names`), its URL, its header values and its body
(:meth:`Scanner.scan_request`). What the request declares is decoded first, as
its server will read it (:class:`_View`): percent escapes in the URL and in a
form body (``application/x-www-form-urlencoded``); ``\\/`` and the ``\\u00XX``
escapes of printable ASCII characters in a JSON body; content encodings (gzip,
...) the proxy undoes before. What nothing declares (base64, hex, a compressed
body sent as something else, a secret split in two) is beyond any pattern scanner.

Tokens are found wherever they start, glued to a letter (``xAKIA...``) or
not, except in bodies for the detectors whose patterns turn up by chance in
base64 (``WEAK``), of which a body may hold megabytes (a screenshot): there a
match with a letter or digit right before it *and* right after it is taken for
base64, not a token (:func:`_glued`).

Left out of detect-secrets: the keyword and entropy detectors, and the
assignment-style ones built like them (Cloudant, IBM, SoftLayer), which flag
ordinary code and run at 10-30 MB/s each; IPPublicDetector (an address is not
a secret); NpmDetector, whose ``//.+/:_authToken`` is quadratic on a one-line
JSON body; and Artifactory, Mailchimp, Telegram, Discord and Stripe, whose
patterns begin with a character class or an alternation: fine against one
line of code, but tried at every byte of a body (50-200 MB/s each).

Speed decides the shape. Bodies are scanned whole, in C, with no loop over
lines. Joined into one alternation the patterns would lose their literal
starts (``AKIA``, ``ghp_``, ``BEGIN``) and crawl at ~20 MB/s; a
case-insensitive pattern loses its literal start the same way. So each pattern
is its own regex, compiled case-sensitively (issuers fix the case of their
prefixes: ``xoxb-``, ``AKIA``), except that patterns of one detector that begin
alike share a regex. But CPython 3.13's ``re`` searches for a literal start at
about half 3.11's speed (some 1.5 GB/s, a byte at a time), so the regex does
not search: ``bytes.find`` does (2-3 GB/s, more for long needles) and the
regex is tried only where its literal start is (:func:`_walk`, which yields
what finditer would); detectors whose prefixes begin with the same two bytes
share that pass (GitLab's ``gl``, the ``sk`` of OpenAI, Anthropic and Stripe).
A pattern that starts with one fixed byte or none (AWS's ``A``, a profile's
``[0-9a-f]{8}``) keeps finditer. That exact scan is some 22 passes over the
data: 100-130 MB/s in the sidecar image.

So a large body (``PREFILTER_FROM`` bytes or more) is first read once by
Hyperscan (:class:`_Prefilter`), with every detector's pattern compiled in its
prefilter mode, which may report a match that is none but never misses one
(it approximates what it cannot run exactly: lookarounds, lazy repeats); only
the detectors it reports take the exact scan above, which alone decides what
is a secret. The same pass says whether the body holds an escape its media
type declares (JSON's, a form's): most hold none, and are then neither decoded
nor read again. A body with no secret is one pass at over 1 GB/s (``python
-m benchmarks.scanning`` in the sidecar image; the README has the numbers). A
profile's own patterns are always scanned exactly (see :func:`_prefilter`),
and so is every pattern where Hyperscan is not installed (its wheels serve
x86-64 only) or cannot compile it.

The sidecar image copies detect-secrets' patterns into a module when it is
built (``python -m bottle_sidecar.secrets_scan --freeze``), so that the proxy
does not import detect-secrets (and ``requests``) to run: only a match loads
the plugin that vets it. Elsewhere the patterns are read from detect-secrets.
"""

import bisect
import functools
import hashlib
import importlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from re import _constants, _parser  # the parser re.compile uses; see _literal_prefix


def detector_id(name: str) -> str:
    """A detector's name as markers spell it and exemptions may: "AWS Access Key" is "aws-access-key"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


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

# Detectors whose patterns turn up by chance in random base64, standard or URL-safe (how images and
# files travel in a body), more often than once in 10 GB: a short prefix before common letters.
# Per byte of it: Google's AIza 2e-8 (once in 50 MB); GitHub's ghp_ (and gho_, ...) 2e-7 and
# npm's npm_ 2e-8, in URL-safe base64 only (the standard alphabet has no "_"); AWS's AKIA, A3T
# and the like 2.4e-10. Twilio's AC and SK are two letters before 32 lowercase letters and digits, as
# hex digests are. The others start with six or more fixed characters, or hold one base64 has not
# ("." "-" ":" " "): once in 10 GB or far rarer.
WEAK = frozenset({"AWS Access Key", "GitHub Token", "npm Token", "Google API Key", "Twilio API Key"})

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
# The escapes a request may declare, as patterns whose group 1 is the byte's hex digits, or else
# group 2 the byte: percent escapes (a URL, a form body); in JSON, \/ and the \u00XX of a printable
# ASCII character (what tokens are made of; a control character's, such as a terminal's \u001b, is
# left). JSON's pattern stops at every backslash, 1 GB/s on Messages API bodies; one that holds no
# escape to decode is not copied.
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_JSON = re.compile(rb"\\(?:u00([2-7][0-9A-Fa-f])|(/))")
_CODECS = (_PERCENT, _JSON)


@dataclass(frozen=True)
class Hit:
    """Where a secret was seen; deliberately without the secret."""

    detector: str
    location: str  # "url", "header NAME", "body", or what the caller named
    offset: int

    def __str__(self) -> str:
        return f"{self.detector} in {self.location} at offset {self.offset}"


def _literal_prefix(regex: re.Pattern[bytes]) -> bytes:
    """The bytes every match of *regex* begins with, as far as they are fixed: ``AKIA`` of
    ``AKIA[0-9A-Z]{16}``, ``gh`` of ``(ghp|gho)_...`` (re's parser moves what alternatives share
    out in front); none for a case-insensitive pattern or one that begins otherwise (a class, a
    lookbehind, ``\\b``)."""
    prefix = bytearray()

    def take(items) -> bool:  # whether all of *items* were literals (so the prefix may go on after them)
        for op, value in items:
            if op is _constants.LITERAL:
                prefix.append(value)
            elif not (op is _constants.SUBPATTERN and not value[1] & re.IGNORECASE and take(value[3])):
                return False
        return True

    if not regex.flags & re.IGNORECASE:
        take(_parser.parse(regex.pattern, regex.flags))
    return bytes(prefix)


@dataclass(frozen=True)
class _Detector:
    name: str
    regex: re.Pattern[bytes]
    confirm: Callable[[str], bool] | None = None  # a detector's own veto on a match
    weak: bool = False  # in WEAK: in a body, a match inside a word is not counted (see _glued)
    in_group: bool = False  # the secret is the capture group that matched (SECRET_IN_GROUP)
    prefiltered: bool = True  # a profile's own pattern is not: see _prefilter

    @functools.cached_property
    def prefix(self) -> bytes:
        return _literal_prefix(self.regex)


def _needles(detectors: Sequence[_Detector]) -> list[bytes | None]:
    """What :func:`_walk` looks for, for each detector: the literal prefix it shares with every other one
    whose prefix begins with the same two bytes (GitLab's two regexes ``gl``; OpenAI's ``sk-``,
    Anthropic's ``sk-ant-`` and Stripe's ``sk_live_`` ``sk``), so that they take one pass. None
    (finditer) for a detector whose prefix is shorter: a single byte such as AWS's ``A`` is every 64th
    byte of base64, and a step of _walk's loop for each would cost more than the regex engine's search."""
    shared: dict[bytes, bytes] = {}
    for prefix in (detector.prefix for detector in detectors if len(detector.prefix) >= 2):
        shared[prefix[:2]] = os.path.commonprefix([shared.get(prefix[:2], prefix), prefix])
    return [shared.get(detector.prefix[:2]) if len(detector.prefix) >= 2 else None for detector in detectors]


def _walk(data: bytes, needle: bytes, detectors: dict[int, _Detector]) -> dict[int, list[re.Match[bytes]]]:
    """What ``regex.finditer(data)`` yields for each of *detectors* (by index), whose prefixes all begin
    with *needle*: ``bytes.find`` goes from one place of it to the next, and each regex whose prefix is
    there is tried, unless its last match went past. That is finditer's own walk (leftmost first, on after
    the end of each match, and the pattern sees the whole of *data*, before the place as well), but with
    the search in memchr-like C code, which CPython 3.13's ``re`` does at half the speed (see the module's
    doc), and one search for the detectors that share a prefix."""
    found: dict[int, list[re.Match[bytes]]] = {index: [] for index in detectors}
    after = dict.fromkeys(detectors, 0)  # where each detector's last match ended
    position = 0
    while (position := data.find(needle, position)) >= 0:
        for index, detector in detectors.items():
            if position >= after[index] and data.startswith(detector.prefix, position):
                if match := detector.regex.match(data, position):
                    found[index].append(match)
                    after[index] = match.end()
        position += 1
    return found


# Bytes from which a scan is prefiltered (:class:`_Prefilter`). Below, the exact scan alone takes some
# 2 ms at most, and names, headers and most requests never wait for the prefilter's compile.
PREFILTER_FROM = 256 * 1024


class _Prefilter:
    """Which of a scanner's detectors may match some data, from one pass of Hyperscan over it.

    Each detector's regex is compiled in Hyperscan's prefilter mode, whose
    matches are a superset of the regex's, and reports once at most (one report
    says all that is asked: try this detector). The detectors in *unfiltered*
    (a profile's own, and those whose patterns Hyperscan would not compile) are
    always reported. So are the escapes of each codec (``_CODECS``) the data
    holds, as ``escapes[codec]``. A scan releases the GIL, so scratch space
    (what a scan works in) is per thread: the gate scans from several threads
    at once.
    """

    def __init__(self, database, unfiltered: frozenset[int], escapes: dict[re.Pattern[bytes], int]):
        self._database = database  # a hyperscan.Database, or None when no pattern compiled
        self._unfiltered = unfiltered
        self.escapes = escapes
        self._local = threading.local()

    def candidates(self, data: bytes, until: int | None = None) -> set[int] | None:
        """The indices of the detectors that may match *data*, and of the codecs whose escapes it may hold;
        None if Hyperscan failed (scan with every detector, decode every codec). The pass ends where the
        index *until* is first reported: what comes before it is then all the set says."""
        found = set(self._unfiltered)
        if self._database is None or until in found:
            return found
        import hyperscan

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._database)

        def report(index: int, *_) -> bool:  # True ends the pass
            found.add(index)
            return index == until

        try:
            self._database.scan(data, match_event_handler=report, scratch=scratch)
        except hyperscan.ScanTerminated:
            pass
        except hyperscan.error:
            return None
        return found


@functools.lru_cache(maxsize=8)
def _prefilter(patterns: tuple[tuple[bytes, int] | None, ...]) -> _Prefilter | None:
    """The prefilter for detectors of *patterns* ((regex source, re flags), by index), compiled once per
    process for each set (about 40 ms for the built-in detectors: a policy reload or a second scanner
    does not pay it again); None where Hyperscan is not installed.

    A None pattern is never filtered: a profile's own. Hyperscan reads PCRE's syntax, which is not
    Python's everywhere (``a{,5}``, ``[[:alpha:]]`` mean other things), so only the built-in patterns,
    which the unit tests hold to finditer's results, are prefiltered.
    """
    try:
        import hyperscan
    except ImportError:
        return None
    expressions: dict[int, tuple[bytes, int]] = {}  # by detector index: (Hyperscan's expression, its flags)
    escapes = {codec: len(patterns) + number for number, codec in enumerate(_CODECS)}
    for index, pattern in enumerate(patterns + tuple((codec.pattern, codec.flags) for codec in escapes)):
        if pattern is not None:
            source, flags = pattern
            mode = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY
            for python, hs in ((re.IGNORECASE, hyperscan.HS_FLAG_CASELESS), (re.DOTALL, hyperscan.HS_FLAG_DOTALL),
                               (re.MULTILINE, hyperscan.HS_FLAG_MULTILINE)):
                mode |= hs if flags & python else 0
            expressions[index] = ((b"(?x)" if flags & re.VERBOSE else b"") + source, mode)

    def compiled(indices: list[int]):
        database = hyperscan.Database()
        database.compile(expressions=[expressions[index][0] for index in indices], ids=indices,
                         flags=[expressions[index][1] for index in indices])
        return database

    def compiles(index: int) -> bool:
        try:
            compiled([index])
        except hyperscan.error:
            return False
        return True

    good = list(expressions)
    try:
        database = compiled(good) if good else None
    except hyperscan.error:  # one pattern or more it cannot take, even approximately: keep the others
        good = [index for index in expressions if compiles(index)]
        database = compiled(good) if good else None
    return _Prefilter(database, frozenset(range(len(patterns) + len(escapes))) - frozenset(good), escapes)


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


@functools.cache
def builtin() -> tuple[_Detector, ...]:
    """The built-in detectors, compiled once, when a scanner first needs them: the host's planning, which
    imports this module for its names, does not pay for reading detect-secrets."""
    try:
        from bottle_sidecar._detect_secrets_frozen import PATTERNS
    except ImportError:  # not in the sidecar image: read detect-secrets itself
        PATTERNS = detect_secrets_patterns()
    detectors = []
    for plugin, kind, source, flags in PATTERNS:
        regex = re.compile(source.encode(), flags)
        in_group = plugin in SECRET_IN_GROUP and regex.groups > 0
        detectors.append(_Detector(kind, regex, functools.partial(_confirm, plugin), kind in WEAK, in_group))
    return tuple(detectors + [_Detector(name, re.compile(pattern), weak=name in WEAK) for name, pattern in EXTRA])


def _confirm(plugin: str, text: str) -> bool:
    """The plugin's own analyze_string vets a match: JwtTokenDetector, for one,
    drops "eyJ..." strings whose parts do not decode. The plugin (and with it
    detect-secrets) is loaded on the first match only, which in the sidecar is
    a request about to be blocked."""
    return any(True for _ in _plugin(plugin).analyze_string(text))




def _glued(data: bytes, start: int, end: int) -> bool:
    """Whether the match *start*:*end* sits inside a longer run of letters and digits, on both sides.

    Inside base64 a weak detector's pattern turns up by chance (``WEAK``):
    ``AIza`` plus 35 base64 letters about every 50 MB. Such a match nearly
    always has base64 letters on either side; asking for a word start or a
    word end makes it 16 times rarer. A token written into text has a space, a
    quote, an escape or the end on one side at least, so one glued to a letter
    in front (``xAKIA...``) still counts. A JSON escape (``\\nAKIA...``) ends a word.
    """
    if start == 0 or end == len(data) or data[start - 1] not in _WORD or data[end] not in _WORD:
        return False
    return not (start >= 2 and data[start - 2] == _BACKSLASH)


@dataclass(frozen=True)
class _View:
    """Bytes as their server reads them: *data* is *raw* with the escapes it declares decoded.

    A hit is found in *data* and told, or replaced, where *raw* has it: ``at``
    maps an offset in data to raw. Each escape decodes to one byte.
    """

    raw: bytes
    data: bytes
    escapes: tuple[int, ...] = ()  # where in data each escape's byte is
    shifts: tuple[int, ...] = ()  # how far raw is ahead of data after each escape

    @classmethod
    def of(cls, raw: bytes, codec: re.Pattern[bytes] | None = None) -> "_View":
        """*raw* with the escapes of *codec* (``_PERCENT``, ``_JSON``; None: as it is) decoded."""
        pieces, escapes, shifts, done, shift = [], [], [], 0, 0
        for match in codec.finditer(raw) if codec is not None else ():
            start, end = match.span()
            pieces += [raw[done:start], bytes([int(match[1], 16)]) if match[1] else match[2]]
            escapes.append(start - shift)
            shift += end - start - 1
            shifts.append(shift)
            done = end
        if not escapes:
            return cls(raw, raw)
        pieces.append(raw[done:])
        return cls(raw, b"".join(pieces), tuple(escapes), tuple(shifts))

    def at(self, offset: int) -> int:
        index = bisect.bisect_left(self.escapes, offset)
        return offset + (self.shifts[index - 1] if index else 0)


def _body_codec(headers: Iterable[tuple[bytes, bytes]]) -> re.Pattern[bytes] | None:
    """How a body is escaped, by the media type its ``content-type`` header declares: a form's
    percent escapes, JSON's, or None."""
    media = next((value for name, value in headers if name.lower() == b"content-type"), b"").lower()
    media = media.partition(b";")[0].strip()
    if media == b"application/x-www-form-urlencoded":
        return _PERCENT
    return _JSON if media.endswith(b"/json") or media.endswith(b"+json") else None


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
        detectors = builtin() + tuple(_Detector(name, regex, prefiltered=False) for name, regex in patterns)
        self._detectors = tuple(detector for detector in detectors if detector_id(detector.name) not in off)
        self._exempt = tuple(value.encode() for value in (*EXAMPLE_KEYS, *exempt_values))
        self._needles = _needles(self._detectors)
        self._sharing = {needle: {index: detector for index, detector in enumerate(self._detectors)
                                  if self._needles[index] == needle} for needle in set(self._needles) - {None}}
        self._patterns = tuple((detector.regex.pattern, detector.regex.flags) if detector.prefiltered else None
                               for detector in self._detectors)

    def _view(self, raw: bytes, codec: re.Pattern[bytes] | None) -> tuple[_View, set[int] | None]:
        """*raw* as its server reads it (:class:`_View`), and the detectors worth scanning that with exactly
        (see :class:`_Prefilter`; None: all of them). The prefilter's pass over *raw* says as well whether it
        holds an escape of *codec*; it ends at the first, and the decoded bytes are read instead."""
        prefilter = _prefilter(self._patterns) if len(raw) >= PREFILTER_FROM else None
        escape = prefilter.escapes[codec] if prefilter is not None and codec is not None else None
        reported = prefilter.candidates(raw, until=escape) if prefilter is not None else None
        if reported is None:
            return _View.of(raw, codec), None
        if escape not in reported:
            return _View(raw, raw), reported
        view = _View.of(raw, codec)
        return view, prefilter.candidates(view.data)

    def _found(self, view: _View, candidates: set[int] | None, body: bool) -> Iterator[tuple[str, int, int, int]]:
        """(detector, start of the match, start and end of the secret) for each secret in *view*, detector by
        detector, as offsets in its raw bytes: :meth:`scan` stops at the first, :meth:`redact` takes all, and
        with no secret both cost the same. In a *body*, weak detectors skip matches inside words (_glued); only
        *candidates* scan (None: every detector)."""
        data, walked = view.data, {}
        for index, detector in enumerate(self._detectors):
            if candidates is not None and index not in candidates:
                continue
            if (needle := self._needles[index]) is None:
                matches = detector.regex.finditer(data)
            else:
                if needle not in walked:
                    sharing = self._sharing[needle]
                    walked[needle] = _walk(data, needle, sharing if candidates is None else
                                           {other: sharing[other] for other in sharing if other in candidates})
                matches = walked[needle][index]
            for match in matches:
                if body and detector.weak and _glued(data, *match.span()):
                    continue
                start, end = match.span(match.lastindex) if detector.in_group and match.lastindex else match.span()
                secret = data[start:end]
                if not secret or any(secret in value for value in self._exempt):
                    continue
                if detector.confirm and not detector.confirm(match.group().decode("latin-1")):
                    continue
                yield detector.name, view.at(match.start()), view.at(start), view.at(end)

    def scan(self, data: bytes, location: str = "body", codec: re.Pattern[bytes] | None = None, *,
             body: bool = True) -> Hit | None:
        """The first secret in *data* (decoded by *codec*, see :class:`_View`), or None. *body*: what a body
        holds, where weak detectors skip matches inside words; names, URLs and headers are not."""
        for name, offset, _, _ in self._found(*self._view(data, codec), body):
            return Hit(name, location, offset)
        return None

    def redact(self, data: bytes, location: str, markers: Markers, codec: re.Pattern[bytes] | None = None, *,
               body: bool = True) -> tuple[bytes, list[Hit]]:
        """*data* with every secret replaced by its marker, and a hit for each (its offset in *data* as given);
        *codec* and *body* as for :meth:`scan`. An escaped secret is replaced escapes and all.

        Secrets that overlap (two detectors on one token) are replaced as one,
        named by the detector of the first. Each span is kept out of backslash
        escapes (see :func:`_outside_escapes`).
        """
        found = self._found(*self._view(data, codec), body)
        spans = sorted((*_outside_escapes(data, start, end), name) for name, _, start, end in found)
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

    def scan_names(self, names: Iterable[tuple[str, bytes]]) -> Hit | None:
        """The first secret in *names* ((location, bytes) pairs: what names a request's destination and
        form rather than what it carries, see the module's doc), as they are, or None."""
        return self._first_hit([(location, _View(name, name)) for location, name in names])

    def redact_name(self, name: str, markers: Markers) -> str:
        """*name* (a host, a method, a ref) with every secret in it replaced by its marker: how a record
        may keep what a secret was found in."""
        raw = name.encode("utf-8", "surrogateescape")
        return self.redact(raw, "name", markers, body=False)[0].decode("utf-8", "surrogateescape")

    def scan_request(self, url: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Hit | None:
        """The first secret in the URL, a header value or the body, or None; each decoded as the request
        declares (see :class:`_View`). The header names must have passed :meth:`scan_names`: a hit
        in a header's value names the header.

        The URL and the headers go through as one small text (one pass per
        pattern, not one per header); the offset is mapped back to its part.
        Headers the proxy adds itself are not here to be scanned: it scans
        before it injects.
        """
        headers = list(headers)
        return self._head_hit(url, headers) or self.scan(body, codec=_body_codec(headers))

    def _head_hit(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> Hit | None:
        return self._first_hit([("url", _View.of(url, _PERCENT))]
                               + [(_header(name), _View(value, value)) for name, value in headers])

    def _first_hit(self, parts: list[tuple[str, _View]]) -> Hit | None:
        """The first secret in *parts* ((location, view) pairs), scanned as one text of their decoded
        bytes, a line each; its offset told in the raw bytes of its part."""
        starts, position = [], 0
        for _, view in parts:
            starts.append(position)
            position += len(view.data) + 1
        hit = self.scan(b"\n".join(view.data for _, view in parts), body=False)
        if hit is None:
            return None
        index = bisect.bisect_right(starts, hit.offset) - 1
        location, view = parts[index]
        return Hit(hit.detector, location, view.at(hit.offset - starts[index]))

    def redact_request(self, url: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes,
                       markers: Markers) -> Redacted:
        """What :meth:`scan_request` scans, with every secret replaced by its marker.

        The URL and the headers are scanned together first, as there, and
        one by one only when that found something.
        """
        headers = list(headers)
        hits: list[Hit] = []
        if self._head_hit(url, headers) is not None:
            url, hits = self.redact(url, "url", markers, _PERCENT, body=False)
            for index, (name, value) in enumerate(headers):
                value, found = self.redact(value, _header(name), markers, body=False)
                headers[index] = (name, value)
                hits += found
        body, found = self.redact(body, "body", markers, _body_codec(headers))
        return Redacted(url, headers, body, hits + found)


def _header(name: bytes) -> str:
    """Where a hit in the header *name* is: ``header NAME``, lower case."""
    return f"header {name.decode('latin-1').lower()}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--freeze"]:
        raise SystemExit(f"usage: python -m {__spec__.name} --freeze  (writes {FROZEN.name} next to this module)")
    freeze()
