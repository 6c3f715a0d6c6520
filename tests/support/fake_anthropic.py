"""A fake Anthropic Messages API for tests that run the real Claude Code.

Claude Code is pointed at it with ``ANTHROPIC_BASE_URL``. It must look like
api.anthropic.com on the wire (SSE event sequence, headers, error shapes)
or the real binary rejects it, so the framing here mirrors the real API.
Replies come from a script the test gives; every request is recorded so a
test can assert what Claude Code sent (system prompt, skills, tool results)::

    script = [tool_use("Bash", {"command": "touch /tmp/x"}), text("done")]
    with FakeMessagesAPI(script, api_key="sk-ant-test", host="0.0.0.0") as api:
        ...  # run claude with ANTHROPIC_BASE_URL=api.url_for("127.0.0.1")
        api.wait_for(lambda r: "done" in api.all_text(r), timeout=30)

Claude Code also sends side requests that offer no tools (session title,
auto mode's permission classifier). Those never consume the script, so a
script describes only the conversation the test cares about; they get an
answer in the shape they ask for (see :func:`_side_text`).

It behaves like the real API in time and failure too: deltas are paced (a gap
before each, as a model generates them), a step can fail the way the real API
does (:func:`rate_limited`, :func:`overloaded`, :func:`stream_error`) or stop
mid-stream until the test lets it go on (:func:`paused`), and :attr:`sent`
records when each event left, so a test can order what a client saw against
what the API had sent.

Run ``python -m tests.support.fake_anthropic --port 8080`` for a manual demo
server that logs one line per request.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import secrets
import ssl
import string
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

DEFAULT_TEXT = "OK."


RATE_LIMIT_MESSAGE = "This request would exceed your organization's rate limit. Please try again later."
OVERLOADED_MESSAGE = "Overloaded"


@dataclass(frozen=True)
class Failure:
    """An error as the real API sends it: an HTTP status with the error body (and
    ``retry-after`` if given), or, with *after_deltas* and a streaming request, an
    ``error`` event once that many deltas of the reply have gone out."""

    status: int
    kind: str  # the error's "type", e.g. "overloaded_error"
    message: str
    retry_after: int | None = None
    after_deltas: int | None = None


@dataclass(frozen=True)
class Step:
    """One scripted assistant turn: its content blocks and why it stopped; when and how it is sent."""

    content: tuple[dict[str, Any], ...]
    stop_reason: str
    release: threading.Event | None = None  # answer only once this is set...
    hold_after: int | None = None  # ...or, streaming, send this many deltas first
    gap: float | None = None  # seconds before each delta (None: the server's gap)
    failure: Failure | None = None


def text(reply: str) -> Step:
    """A plain text answer that ends the turn (``stop_reason: end_turn``)."""
    return Step(({"type": "text", "text": reply},), "end_turn")


def tool_use(name: str, input: dict[str, Any], preamble: str | None = None) -> Step:
    """A call of tool *name*; Claude Code runs it and sends the result next.

    *preamble* is optional text before the call, as the real model often
    writes. The id is fresh per step so tool results can be matched to it.
    """
    call = {"type": "tool_use", "id": _new_id("toolu_01"), "name": name, "input": input}
    blocks = ({"type": "text", "text": preamble}, call) if preamble else (call,)
    return Step(blocks, "tool_use")


def held(release: threading.Event, then: Step | None = None) -> Step:
    """*then* (default: a short text), answered only once *release* is set.

    Keeps the agent mid-request, for tests that interrupt a running session.
    """
    return dataclasses.replace(then or text(DEFAULT_TEXT), release=release)


def paused(release: threading.Event, then: Step, after: int = 1) -> Step:
    """*then* streamed up to *after* deltas, the rest only once *release* is set.

    For ordering tests: what the client shows before *release* can only be
    what the API had sent by then.
    """
    _check_delta_count(then, after)
    return dataclasses.replace(then, release=release, hold_after=after)


def rate_limited(retry_after: int = 1) -> Step:
    """A 429 ``rate_limit_error`` with ``retry-after``, as the real API refuses a request over the rate limit."""
    return Step((), "", failure=Failure(429, "rate_limit_error", RATE_LIMIT_MESSAGE, retry_after))


def overloaded(retry_after: int = 1) -> Step:
    """A 529 ``overloaded_error`` with ``retry-after``, as the real API answers when it is overloaded."""
    return Step((), "", failure=Failure(529, "overloaded_error", OVERLOADED_MESSAGE, retry_after))


def stream_error(then: Step | None = None, after: int = 1) -> Step:
    """*then* (default: a text of a few words) streamed for *after* deltas, then an
    ``overloaded_error`` event that ends the stream, as the real API breaks off a reply.
    A request that does not stream gets the 529 instead."""
    then = then or text("This reply breaks off after its first words.")
    _check_delta_count(then, after)
    return dataclasses.replace(then, failure=Failure(529, "overloaded_error", OVERLOADED_MESSAGE, after_deltas=after))


def _check_delta_count(step: Step, after: int) -> None:
    """A step that acts after *after* deltas must have more than that, or it would never act."""
    count = sum(len(_deltas(block)) for block in step.content)
    if not 0 <= after < count:
        raise ValueError(f"the step streams {count} deltas: nothing happens after {after} of them")


@dataclass
class RecordedRequest:
    """What one HTTP request carried; ``body`` is the parsed JSON or None."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    main: bool = False  # a /v1/messages request of the agent conversation


@dataclass(frozen=True)
class SentEvent:
    """One server-sent event as it left: for which request, its name and data, and when
    (``time.monotonic()`` just before the write, so that whatever a client has read is recorded)."""

    request: RecordedRequest
    name: str
    data: dict[str, Any]
    at: float


class FakeMessagesAPI:
    """A scripted Messages API in a background thread; a context manager.

    *script* is the list of :class:`Step` answers for main-conversation
    requests, in order; after it runs out they get *default_text*. Like the
    real API, a request must carry *api_key* as ``x-api-key``, or *oauth_token*
    as ``Authorization: Bearer``, when either is given, or it gets a 401.
    Streamed deltas leave *gap* seconds apart (a step may choose its own).
    Port 0 picks a free port (see :attr:`port`).
    """

    def __init__(
        self,
        script: Sequence[Step] = (),
        *,
        api_key: str | None = None,
        oauth_token: str | None = None,
        gap: float = 0.005,
        host: str = "127.0.0.1",
        port: int = 0,
        default_text: str = DEFAULT_TEXT,
        log: Callable[[str], None] | None = None,
        tls: tuple[str, str] | None = None,
    ):
        """*tls* = (certificate file, key file) serves HTTPS, as the real API does."""
        self.api_key = api_key
        self.oauth_token = oauth_token
        self.gap = gap
        self.scheme = "https" if tls else "http"
        self.default_text = default_text
        self._log = log
        self._script = list(script)
        self._requests: list[RecordedRequest] = []
        self._sent: list[SentEvent] = []
        self._usages: list[dict[str, Any]] = []  # the usage of every reply sent whole (streamed to its end)
        self._changed = threading.Condition()
        self._server = _Server((host, port), _Handler)
        self._server.api = self
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            # Handshakes happen in the handler threads, not in accept().
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        # A short poll interval keeps shutdown (and so each test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        """The bound port, useful when port 0 let the OS pick one."""
        return self._server.server_address[1]

    def url_for(self, host: str) -> str:
        """Base URL as seen from *host* (e.g. a container's view of the host)."""
        return f"{self.scheme}://{host}:{self.port}"

    def __enter__(self) -> FakeMessagesAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def enqueue(self, *steps: Step) -> None:
        """Append *steps* to the script (for fixtures that start the server first)."""
        with self._changed:
            self._script.extend(steps)

    # -- recorded requests ---------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._changed:
            return list(self._requests)

    @property
    def sent(self) -> list[SentEvent]:
        """A snapshot of every server-sent event so far, in the order they left."""
        with self._changed:
            return list(self._sent)

    def message_requests(self, main_only: bool = False) -> list[RecordedRequest]:
        """POST /v1/messages requests; *main_only* drops the side requests."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and _route(r.path) == "/v1/messages" and (r.main or not main_only)
        ]

    def wait_for(self, predicate: Callable[[RecordedRequest], bool], timeout: float) -> RecordedRequest:
        """The first recorded request matching *predicate*, waiting up to *timeout* s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for request in self._requests:
                    if predicate(request):
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching request within {timeout}s; got {len(self._requests)}")
                self._changed.wait(remaining)

    @staticmethod
    def system_text(request: RecordedRequest) -> str:
        """The system prompt as one string (it may be a string or text blocks)."""
        return _flatten((request.body or {}).get("system", ""))

    @classmethod
    def all_text(cls, request: RecordedRequest) -> str:
        """System prompt and all message contents flattened, for substring asserts."""
        messages = (request.body or {}).get("messages", [])
        return "\n".join([cls.system_text(request)] + [_flatten(m.get("content", "")) for m in messages])

    # -- used by the handler -------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def replied_usage(self) -> list[dict[str, Any]]:
        """The ``usage`` of each reply sent whole, JSON or streamed to its ``message_delta``, in order."""
        with self._changed:
            return list(self._usages)

    def _record_usage(self, usage: dict[str, Any]) -> None:
        with self._changed:
            self._usages.append(dict(usage))

    def _record_sent(self, event: SentEvent) -> None:
        with self._changed:
            self._sent.append(event)

    def _reply(self, request: RecordedRequest) -> Step:
        """The script's next step for main requests, else a default answer."""
        if not request.main:
            return text(_side_text(request.body, self.default_text))
        with self._changed:
            return self._script.pop(0) if self._script else text(self.default_text)


def _is_main(body: Any) -> bool:
    """Whether a messages request belongs to the agent conversation.

    Claude Code's agent loop always offers its tools, whatever the model
    (``--model haiku`` makes the main requests haiku too); its side requests
    offer none.
    """
    return isinstance(body, dict) and bool(body.get("tools"))


def _side_text(body: dict[str, Any], default: str) -> str:
    """An answer a side request can parse, since Claude Code acts on it.

    Session titles ask for JSON via ``output_config.format``; auto mode's
    permission classifier stops at ``</block>`` and needs ``<block>no`` to
    let a tool call run (anything else blocks it).
    """
    format = (body.get("output_config") or {}).get("format") or {}
    if format.get("type") == "json_schema":
        return json.dumps(_sample(format["schema"], default))
    if "</block>" in (body.get("stop_sequences") or []):
        return "<block>no</block>"
    return default


def _sample(schema: dict[str, Any], default: str) -> Any:
    """A minimal value valid against a simple JSON schema."""
    kind = schema.get("type")
    if kind == "object":
        return {name: _sample(sub, default) for name, sub in schema.get("properties", {}).items()}
    if "enum" in schema:
        return schema["enum"][0]
    return {"array": [], "boolean": False, "integer": 0, "number": 0, "null": None}.get(kind, default)


def _stop_at(step: Step, stop_sequences: list[str]) -> tuple[Step, str | None]:
    """Cut a text answer at the first stop sequence, as the real API does.

    The sequence itself is not part of the text; it is reported in
    ``stop_sequence`` with ``stop_reason: stop_sequence``.
    """
    if len(step.content) != 1 or step.content[0]["type"] != "text":
        return step, None
    reply = step.content[0]["text"]
    hits = sorted((reply.find(s), s) for s in stop_sequences if s in reply)
    if not hits:
        return step, None
    position, sequence = hits[0]
    return dataclasses.replace(step, content=({"type": "text", "text": reply[:position]},),
                               stop_reason="stop_sequence"), sequence


class _Server(ThreadingHTTPServer):
    """The HTTP server; handler threads never keep the test process alive."""

    daemon_threads = True
    api: FakeMessagesAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients drop idle keep-alive connections (Claude Code on exit); no error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request; HTTP/1.1 keep-alive with chunked SSE like the real API."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic"

    @property
    def api(self) -> FakeMessagesAPI:
        return self.server.api

    def _handle(self) -> None:
        self.request_id = _new_id("req_011")
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length)) if length else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, self.path, headers, body)
        route = _route(self.path)
        is_messages = self.command == "POST" and route == "/v1/messages"
        request.main = is_messages and _is_main(body)
        self.api._record(request)  # before answering: a test that saw the answer sees the request
        if route == "/api/hello":  # Claude Code's unauthenticated preconnect probe
            status = self._json(200, {})
        elif not self._authorized():
            bearer = "authorization" in self.headers and "x-api-key" not in self.headers
            status = self._error(401, "authentication_error", "Invalid bearer token" if bearer else "invalid x-api-key")
        elif route in ("/v1/messages", "/v1/messages/count_tokens") and not isinstance(body, dict):
            status = self._error(400, "invalid_request_error", "request body must be a JSON object")
        elif is_messages:
            status = self._messages(request)
        elif self.command == "POST" and route == "/v1/messages/count_tokens":
            status = self._json(200, {"input_tokens": _estimate_tokens(body)})
        else:
            status = self._error(404, "not_found_error", "Not found")
        if self.api._log:
            model = body.get("model", "-") if isinstance(body, dict) else "-"
            kind = "main" if request.main else "side" if is_messages else "-"
            self.api._log(f"{self.command} {self.path} -> {status} model={model} {kind}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _authorized(self) -> bool:
        """An API key counts only in ``x-api-key``, an OAuth token only as a bearer token."""
        key, token = self.api.api_key, self.api.oauth_token
        if key is None and token is None:
            return True
        return (key is not None and self.headers.get("x-api-key") == key) or (
            token is not None and self.headers.get("authorization") == f"Bearer {token}"
        )

    def _messages(self, request: RecordedRequest) -> int:
        body = request.body
        step = self.api._reply(request)
        if step.release is not None and (step.hold_after is None or not body.get("stream")):
            step.release.wait(timeout=600)  # an answer that does not stream cannot be sent in part
        failure = step.failure
        if failure is not None and (failure.after_deltas is None or not body.get("stream")):
            retry = {} if failure.retry_after is None else {"retry-after": str(failure.retry_after)}
            return self._error(failure.status, failure.kind, failure.message, retry)
        step, stop_sequence = _stop_at(step, body.get("stop_sequences") or [])
        message = {
            "id": _new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": list(step.content),
            "stop_reason": step.stop_reason,
            "stop_sequence": stop_sequence,
            "usage": _usage(_estimate_tokens(body), _estimate_tokens(step.content)),
        }
        if not body.get("stream"):
            self.api._record_usage(message["usage"])
            return self._json(200, message)
        self._stream(request, message, step)
        return 200

    def _stream(self, request: RecordedRequest, message: dict[str, Any], step: Step) -> None:
        """Send *message* as the real event sequence, one chunk per event, deltas *gap* apart;
        hold or break off where *step* says."""
        framing = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        self._start(200, "text/event-stream; charset=utf-8", framing)
        event = functools.partial(self._event, request)
        gap = self.api.gap if step.gap is None else step.gap
        failure = step.failure
        usage = message["usage"]
        start = dict(message, content=[], stop_reason=None, stop_sequence=None)
        start["usage"] = dict(usage, output_tokens=1)
        event("message_start", {"message": start})
        sent = 0
        for index, block in enumerate(message["content"]):
            empty = {"type": "text", "text": ""} if block["type"] == "text" else dict(block, input={})
            event("content_block_start", {"index": index, "content_block": empty})
            if index == 0:
                event("ping", {})
            for delta in _deltas(block):
                if failure is not None and sent == failure.after_deltas:
                    event("error", {"error": {"type": failure.kind, "message": failure.message}})
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if sent == step.hold_after:
                    step.release.wait(timeout=600)
                time.sleep(gap)
                event("content_block_delta", {"index": index, "delta": delta})
                sent += 1
            event("content_block_stop", {"index": index})
        stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        event("message_delta", {"delta": stop, "usage": usage})
        self.api._record_usage(usage)
        event("message_stop", {})
        self.wfile.write(b"0\r\n\r\n")

    def _event(self, request: RecordedRequest, name: str, data: dict[str, Any]) -> None:
        """One SSE event as one HTTP chunk (``wfile`` is unbuffered: it leaves now), recorded as sent."""
        payload = f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        self.api._record_sent(SentEvent(request, name, data, time.monotonic()))
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        data = json.dumps(payload).encode()
        self._start(status, "application/json", {"Content-Length": str(len(data)), **(headers or {})})
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    def _error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> int:
        error = {"type": "error", "error": {"type": kind, "message": message}, "request_id": self.request_id}
        return self._json(status, error, headers)

    def _start(self, status: int, content_type: str, extra: dict[str, str]) -> None:
        """Status line and the headers the real API sends on every answer."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("request-id", self.request_id)
        self.send_header("anthropic-organization-id", str(uuid.UUID(int=0)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests are logged (once, with more detail) via ``log``."""


def _deltas(block: dict[str, Any]) -> list[dict[str, str]]:
    """Split a block's content into the small deltas the real API streams.

    Tool input arrives as ``input_json_delta`` fragments that are only
    valid JSON once concatenated; the first one is empty, as on the wire.
    """
    if block["type"] == "text":
        words = block["text"].split(" ")
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        return [{"type": "text_delta", "text": p} for p in pieces]
    encoded = json.dumps(block["input"])
    pieces = [""] + [encoded[i : i + 12] for i in range(0, len(encoded), 12)]
    return [{"type": "input_json_delta", "partial_json": p} for p in pieces]


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _estimate_tokens(payload: Any) -> int:
    """Roughly four characters per token, like a real tokenizer on English."""
    return max(1, len(json.dumps(payload)) // 4)


def _route(path: str) -> str:
    """The path without query: Claude Code posts to ``/v1/messages?beta=true``."""
    return urlsplit(path).path


def _flatten(content: Any) -> str:
    """Text of a string or a list of content blocks, including nested results."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input")))
        elif block.get("type") == "tool_result":
            parts.append(_flatten(block.get("content", "")))
    return "\n".join(parts)


def _new_id(prefix: str) -> str:
    """An id shaped like the real ones: a prefix and base62 characters."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(22))


def main() -> None:
    """Serve a two-step demo script forever, logging one line per request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", help="require this key (default: accept any)")
    args = parser.parse_args()
    script = [
        tool_use("Bash", {"command": "echo hello from the fake API"}),
        text("Done: the fake API ran echo."),
    ]
    log = functools.partial(print, flush=True)
    try:
        with FakeMessagesAPI(script, api_key=args.api_key, host=args.host, port=args.port, log=log) as api:
            log(f"fake Anthropic API on {api.url_for(args.host)}")
            threading.Event().wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a demo ends


if __name__ == "__main__":
    main()
