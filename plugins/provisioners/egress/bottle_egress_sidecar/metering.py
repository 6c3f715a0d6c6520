"""Metering and budgets: the tokens each Messages API reply says it used, read as the reply passes.

What is metered is every reply from a host the sidecar injects a credential
for (a route of ``[[credentials]]``: the model API), whatever its path, so
that no spelling of a path goes unmetered; a reply is read by its shape. A
Messages reply is server-sent events (``stream: true``:
``message_start`` carries the model and the input side's usage, each
``message_delta`` the output tokens so far) or one JSON body with ``usage``.
:class:`SseMeter` is the response's ``stream`` callable in mitmproxy: it hands
every chunk on as it came, unchanged and at once, and reads the ``data:``
lines beside it (a line longer than :data:`LINE_LIMIT` is skipped, not
buffered); mitmproxy calls it with ``b""`` at the end, when the usage is
recorded. A reply that is not a Messages reply records nothing.

Prices (per million tokens, by model prefix) come from the host's settings in
the policy; a model no price names is metered, not priced. A budget
(``[budget]`` in the profile) is checked before any request to such a host
goes upstream: past it, the request is answered as the real API answers an account
out of credit, 400 ``invalid_request_error``, which Claude Code shows and
does not retry. The budget lives in the policy file, so raising it (``bottle
answer`` on the proposal the supervise server files, or the operator's edit)
applies to the next request.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Callable

LINE_LIMIT = 64 * 1024
FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
#: What the proxy writes in the audit log's ``detail`` of a metered reply (decision ``metered``).
METERED = "metered"


@dataclass
class Usage:
    """One reply's tokens, as the API counts them."""

    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def tokens(self) -> int:
        return sum(getattr(self, name) for name in FIELDS)

    def take(self, usage: object) -> None:
        """The counts in a reply's ``usage`` object, where they are numbers (each is the total so far)."""
        if isinstance(usage, dict):
            for name in FIELDS:
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    setattr(self, name, value)

    def as_detail(self) -> dict:
        return asdict(self)


def message_usage(body: bytes) -> Usage | None:
    """The usage of a whole (not streamed) Messages reply, or None when *body* is not one."""
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    if not isinstance(reply, dict) or reply.get("type") != "message" or "usage" not in reply:
        return None
    usage = Usage(model=str(reply.get("model", ""))[:200])
    usage.take(reply["usage"])
    return usage


class SseMeter:
    """A streamed reply's ``stream`` callable: every chunk goes on as it came; *done* gets the usage at the end."""

    def __init__(self, done: Callable[[Usage], None]):
        self.done = done
        self.usage = Usage()
        self.started = False  # a message_start was seen: this is a Messages reply
        self._line = b""
        self._skipping = False  # inside a line over LINE_LIMIT

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            self._feed(chunk)
        elif self.started:
            self.done(self.usage)
        return chunk

    def _feed(self, chunk: bytes) -> None:
        data = self._line + chunk if self._line else chunk
        if b'"message_' not in data and not self._skipping:  # the text deltas, nearly every chunk: nothing to read
            self._line = data[data.rfind(b"\n") + 1:]
            if len(self._line) > LINE_LIMIT:
                self._line, self._skipping = b"", True
            return
        *lines, rest = data.split(b"\n")
        if lines and self._skipping:
            lines, self._skipping = lines[1:], False
        for line in lines:
            # Only message_start and message_delta carry usage: the text deltas (nearly every line) are not parsed.
            if line.startswith(b"data:") and b'"message_' in line:
                self._event(line[5:].strip())
        self._line = rest
        if len(rest) > LINE_LIMIT:
            self._line, self._skipping = b"", True

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            self.started = True
            self.usage.model = str(event["message"].get("model", ""))[:200]
            self.usage.take(event["message"].get("usage"))
        elif event.get("type") == "message_delta":
            self.usage.take(event.get("usage"))


@dataclass(frozen=True)
class Budget:
    """A bottle's budget as the policy says it: tokens, dollars (estimated from *prices*), or both."""

    max_tokens: int | None = None
    max_usd: float | None = None
    per: str = "bottle"  # "bottle": all its runs; "run": this sidecar's life
    prices: dict = field(default_factory=dict)  # model prefix -> {field: USD per million tokens}

    def cost(self, usage: Usage) -> float | None:
        """*usage* in USD, from the longest model prefix with a price; None when none has."""
        names = [prefix for prefix in self.prices if usage.model.startswith(prefix)]
        if not names:
            return None
        price = self.prices[max(names, key=len)]
        return sum(getattr(usage, name) * float(price.get(name, 0)) for name in FIELDS) / 1e6

    def spent(self, tokens: int, usd: float) -> str | None:
        """Why a next request would start past this budget, or None when it would not."""
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"its budget of {self.max_tokens} tokens is spent ({tokens} used)"
        if self.max_usd is not None and usd >= self.max_usd:
            return f"its budget of ${self.max_usd:.2f} is spent (${usd:.2f} used, estimated)"
        return None


class Ledger:
    """What the bottle used: each reply's usage added as it ends, and the sums a budget is checked against."""

    def __init__(self, tokens: int = 0, usd: float = 0.0):
        self.tokens, self.usd = tokens, usd

    def add(self, usage: Usage, cost: float | None) -> None:
        """Count *usage*, whose estimated cost is *cost* (None: no price for its model)."""
        self.tokens += usage.tokens
        self.usd += cost or 0.0


def budget_error(slug: str, why: str) -> bytes:
    """The Messages API's own error body for a request past the budget (as for an account out of credit)."""
    message = (f"bottle {slug}: {why}. The operator can raise it: `bottle proposals` shows the request, "
               f"`bottle answer ID --approve` grants it.")
    return json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}).encode()
