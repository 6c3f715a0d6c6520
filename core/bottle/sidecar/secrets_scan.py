"""Find token-shaped secrets in outgoing requests, and say where, never what.

The patterns are detect-secrets' regex detectors (AWS, GitHub, GitLab, Slack,
private keys, JWT, ...), a few token formats it lacks or matches slowly
(Anthropic, fine-grained GitHub, npm, Google, Stripe), and the profile's own
``secret_patterns``. A hit names the detector, the place (``url``, ``header
NAME``, ``body``) and an offset, so the audit log can say why a request was
stopped without repeating the secret.

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
import importlib
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

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
_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
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
    detectors = [_Detector(kind, re.compile(source.encode(), flags), functools.partial(_confirm, plugin))
                 for plugin, kind, source, flags in PATTERNS]
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


class Scanner:
    """Scans requests with the built-in detectors plus *patterns* ((name, bytes
    regex) pairs), ignoring the credential *placeholders*: the agent may hold
    and send those, and the proxy replaces them anyway."""

    def __init__(self, patterns: Iterable[tuple[str, re.Pattern[bytes]]] = (), placeholders: Iterable[str] = ()):
        self._detectors = BUILTIN + tuple(_Detector(name, regex, whole_word=False) for name, regex in patterns)
        self._placeholders = tuple(placeholder.encode() for placeholder in placeholders)

    def scan(self, data: bytes, location: str = "body") -> Hit | None:
        """The first secret in *data*, or None."""
        for detector in self._detectors:
            for match in detector.regex.finditer(data):
                found = match.group()
                if detector.whole_word and _glued(data, match.start()):
                    continue
                if any(found in placeholder for placeholder in self._placeholders):
                    continue
                if detector.confirm and not detector.confirm(found.decode("latin-1")):
                    continue
                return Hit(detector.name, location, match.start())
        return None

    def scan_request(self, url: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Hit | None:
        """The first secret in the URL, a header value or the body, or None.

        The URL and the headers go through as one small text (one pass per
        pattern, not one per header); the offset is mapped back to its part.
        Headers the proxy adds itself are not here to be scanned: it scans
        before it injects.
        """
        parts = [("url", url)] + [(f"header {name.decode('latin-1').lower()}", value) for name, value in headers]
        starts, position = [], 0
        for _, value in parts:
            starts.append(position)
            position += len(value) + 1
        hit = self.scan(b"\n".join(value for _, value in parts))
        if hit is not None:
            index = bisect.bisect_right(starts, hit.offset) - 1
            return Hit(hit.detector, parts[index][0], hit.offset - starts[index])
        return self.scan(body)


if __name__ == "__main__":
    if sys.argv[1:] != ["--freeze"]:
        raise SystemExit(f"usage: python -m {__spec__.name} --freeze  (writes {FROZEN.name} next to this module)")
    freeze()
