"""The supervise server: the bottled agent asks for more, the operator answers.

Run in the sidecar as::

    python -m bottle_supervise_sidecar.server --listen-host 0.0.0.0 --listen-port 8765
        --queue /var/lib/bottle/supervise/queue.sqlite --audit /var/log/bottle/audit.sqlite
        --bottle SLUG --agent NAME --answer-timeout 600 [--deny /run/bottle/supervise-deny.json]

It prints ``bottle-supervise: listening on HOST:PORT`` once it accepts
connections (``--listen-port 0`` picks a free port). One HTTP server carries:

- ``/mcp``: an MCP server (streamable HTTP) with the tools ``request_egress``,
  ``request_capability`` and ``report_blocked``. A call becomes a proposal in
  the host's queue (see ``proposals``); the tool waits for the operator's
  answer, at most ``--answer-timeout`` seconds, and returns it. The streamed
  response sends a keep-alive every 15 s, so HTTP clients with idle timeouts
  wait as long as the operator takes. An approved egress request is applied by
  the host before it writes the answer: this server only waits.
- ``/hooks/pre-tool-use``, ``/hooks/post-tool-use``, ``/hooks/stop``: Claude
  Code's hook input (POSTed by the guest's root-owned hook client, see
  ``bottle_supervise.plugin``) is recorded in the audit log, and
  PreToolUse is answered allow or deny by the ``--deny`` rules (see
  ``deny_rules``). PreToolUse input that cannot be read is denied.

Every ask and answer is audited with source ``supervise``. Hook events are
audited with source ``guest``: they are what a process in the guest reported,
and the agent can post the same (or stay silent by killing its own hook
processes, which run as its user). They are an audit trail and deny rules
against honest mistakes, not proof of what ran; the sandbox is the boundary.
The agent reaches this server and nothing else of the sidecar's state: the
queue and the audit log are files only the sidecar and the host can write.

All of it is agent input, so all of it is bounded: request bodies (hooks
``MAX_HOOK_BODY``, MCP ``MAX_MCP_BODY``), every field kept in a row (see
``audit.cut``), and the rate: hook events and asks each go through a token
bucket (``--hook-rate``/``--hook-burst``, ``--ask-rate``/``--ask-burst``), and
at most ``--max-pending`` asks wait at once. What is over a limit is refused
(a PreToolUse denied, so flooding fails closed) and counted: one row says how
many were refused, when the next one is let through or the server stops.

In the image this is ``bottle_supervise_sidecar.server``; it imports its siblings
relatively and nothing else from bottle.
"""

import argparse
import json
import logging
import signal
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from bottle_sidecar.audit import AuditLog, cut
from bottle_supervise_sidecar.budget_watch import BudgetWatch
from bottle_supervise_sidecar.deny_rules import DenyRule, first_match, parse_rules
from bottle_egress_sidecar.policy import RuleError, parse_rule
from bottle_supervise_sidecar.proposals import Proposal, ProposalError, Queue, TooManyPending

SOURCE = "supervise"
GUEST = "guest"  # the source of hook events: what the guest says happened
MAX_TEXT = 2000  # characters in a reason, a capability or a report
# Bytes of hook input: a Write carries the whole file, a PostToolUse the tool's
# output, both far below this (Claude Code cuts long output and a model's reply).
MAX_HOOK_BODY = 2 * 1024 * 1024
HOOK_READERS = 8  # hook bodies read at once: memory stays under HOOK_READERS * MAX_HOOK_BODY
MAX_MCP_BODY = 1024 * 1024  # bytes of one MCP request (tool arguments are a few KB)
AUDIT_INPUT = 4000  # bytes of a tool's input (as JSON) kept in the audit log
SUMMARY = 200  # bytes of a tool's input shown as the audit row's reason
MAX_NAME = 200  # bytes of a tool's name or an id kept in the audit log
HOOK_RATE, HOOK_BURST = 20.0, 100  # hook events per second, and at once (a tool call makes two)
ASK_RATE, ASK_BURST = 1 / 30, 10  # asks per second (one per 30 s), and at once
MAX_PENDING = 10  # asks of this bottle waiting for the operator at once
SHUTDOWN_GRACE = 2  # seconds for in-flight requests when stopping (the init waits 5)
INSTRUCTIONS = (
    "You run in a sandbox whose network and tools an operator controls. When a host you need is "
    "blocked, or a tool or package you need is missing, ask with request_egress or "
    "request_capability, giving a short honest reason; for anything else in your way, use "
    "report_blocked. A human answers; the call returns when they do (this can take minutes)."
)

Reason = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="Why you need it, for the operator.")]


class Answer(BaseModel):
    """What a supervise tool returns to the agent."""

    proposal: int
    status: str = Field(description="approved, modified (approved with a change), rejected or expired")
    granted: str | None = Field(description="What was actually granted (for egress: the host now allowed).")
    note: str = Field(description="The operator's note; for an expired request, why it expired.")
    message: str


class TokenBucket:
    """At most *burst* at once and *rate* per second on average: each
    :meth:`take` spends a token, and tokens come back at *rate* up to *burst*."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs a positive rate and a burst of at least 1, not {rate}/{burst}")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class Limit:
    """A rate limit on one kind of agent input, and what it refused since it last said so."""

    what: str  # "hook events", "asks": for the row that counts the refused
    bucket: TokenBucket
    refused: int = 0
    since: float = 0.0  # when the first of those was refused (epoch seconds)


@dataclass
class Supervisor:
    """The server's state: where proposals and events go, the rules for hooks, the limits."""

    queue: Queue
    audit: AuditLog
    bottle: str
    agent: str
    answer_timeout: float
    deny: list[DenyRule]
    hooks: Limit = field(default_factory=lambda: Limit("hook events", TokenBucket(HOOK_RATE, HOOK_BURST)))
    asks: Limit = field(default_factory=lambda: Limit("asks", TokenBucket(ASK_RATE, ASK_BURST)))
    max_pending: int = MAX_PENDING
    readers: anyio.Semaphore = field(default_factory=lambda: anyio.Semaphore(HOOK_READERS))

    def admit(self, limit: Limit) -> bool:
        """Whether *limit* lets one more through; before the first let through after
        some were refused, one row says how many (instead of a row for each)."""
        if not limit.bucket.take():
            self.refuse(limit)
            return False
        self.report_refused(limit)
        return True

    def refuse(self, limit: Limit) -> None:
        if not limit.refused:
            limit.since = time.time()
        limit.refused += 1

    def report_refused(self, limit: Limit) -> None:
        if not limit.refused:
            return
        self.audit.record(
            SOURCE, "rate-limited",
            reason=f"refused {limit.refused} {limit.what} over this bottle's limits",
            detail={"refused": limit.refused, "what": limit.what, "since": limit.since,
                    "rate": limit.bucket.rate, "burst": limit.bucket.burst},
        )
        limit.refused = 0

    async def ask(self, kind: str, what: str, reason: str) -> Answer:
        """Queue a proposal and wait for its answer (in a thread: the wait polls SQLite)."""
        if not self.admit(self.asks):
            raise ToolError(f"too many requests to the operator (at most {self.asks.bucket.burst} at once, then one "
                            f"per {1 / self.asks.bucket.rate:g} s); wait before asking again")
        try:
            proposal_id = self.queue.propose(self.bottle, self.agent, kind, what, reason, self.max_pending)
        except TooManyPending:
            self.refuse(self.asks)
            raise ToolError(f"{self.max_pending} of your requests are waiting for the operator already; "
                            "wait for their answers before asking again") from None
        self._record(self.queue.get(proposal_id), "proposed", reason)
        try:
            proposal = await anyio.to_thread.run_sync(
                self.queue.wait_answer, proposal_id, self.answer_timeout, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call or the server is stopping: nobody
            # will read an answer, so the operator should not be asked any more.
            self._withdraw(proposal_id, "the agent stopped waiting")
            raise
        self._record(proposal, proposal.status, proposal.answer_note)
        return answer_for(proposal)

    def _withdraw(self, proposal_id: int, note: str) -> None:
        try:
            proposal = self.queue.answer(proposal_id, "expired", note)
        except ProposalError:
            return  # answered meanwhile; the answer was not delivered but stands
        self._record(proposal, "expired", note)

    def expire_all(self, note: str) -> None:
        for proposal_id in self.queue.expire_pending(self.bottle, note):
            self._record(self.queue.get(proposal_id), "expired", note)

    def close(self, note: str) -> None:
        """The server is stopping: expire what waits, and count what was refused last."""
        self.expire_all(note)
        self.report_refused(self.hooks)
        self.report_refused(self.asks)

    def _record(self, proposal: Proposal, decision: str, reason: str) -> None:
        self.audit.record(
            SOURCE, decision,
            host=proposal.what if proposal.kind == "egress" else None,
            reason=reason,
            detail={"proposal": proposal.id, "kind": proposal.kind, "what": proposal.what, "agent": proposal.agent,
                    "granted": proposal.answer_value},
        )

    async def pre_tool_use(self, request: Request) -> JSONResponse:
        """Allow or deny a tool call; deny what cannot be read, and a flood, unread (fail closed)."""
        if not self.admit(self.hooks):
            return permission("deny", f"supervise gets more than {self.hooks.bucket.rate:g} tool calls a second "
                                      "from this bottle, so this one is denied; slow down and retry")
        try:
            event = await self.read(request)
            tool, tool_input = event.get("tool_name"), event.get("tool_input", {})
            if not isinstance(tool, str) or not tool:
                raise HookInputError("tool_name must be a non-empty string")
        except HookInputError as err:
            reason = f"supervise could not read the hook input ({err}), so the call is denied"
            self.audit.record(GUEST, "tool-denied", reason=reason, detail={"event": "PreToolUse"})
            return permission("deny", reason)
        # The rules see the whole call; only the audit row is cut.
        rule = first_match(self.deny, tool, tool_input)
        detail = {"event": "PreToolUse", **tool_detail(event)}
        if rule is None:
            self.audit.record(GUEST, "tool-call", reason=summary(tool, tool_input), detail=detail)
            return permission("allow", "no supervise deny rule matches")
        # The agent learns the rule's reason, not its pattern (which would tell
        # it how to phrase the call past it); the audit log keeps the whole rule.
        reason = "denied by the operator's supervise rules" + (f": {rule.reason}" if rule.reason else "")
        self.audit.record(GUEST, "tool-denied", reason=f"{summary(tool, tool_input)} ({reason})",
                          detail={**detail, "rule": rule.text})
        return permission("deny", reason)

    async def read(self, request: Request) -> dict:
        async with self.readers:
            return await read_hook_input(request)

    async def post_tool_use(self, request: Request) -> JSONResponse:
        return await self._observe(request, "tool-result", "PostToolUse")

    async def stop(self, request: Request) -> JSONResponse:
        return await self._observe(request, "stop", "Stop")

    async def _observe(self, request: Request, decision: str, hook: str) -> JSONResponse:
        """Record an event that needs no decision; answer with no output for Claude Code."""
        if not self.admit(self.hooks):
            return JSONResponse({"error": f"more than {self.hooks.bucket.rate:g} hook events a second"},
                                status_code=429)
        try:
            event = await self.read(request)
        except HookInputError as err:
            self.audit.record(GUEST, decision, reason=f"unreadable hook input: {err}", detail={"event": hook})
            return JSONResponse({"error": str(err)}, status_code=400)
        tool = event.get("tool_name")
        detail = {"event": hook, **tool_detail(event)}
        if hook == "Stop" and isinstance(event.get("stop_hook_active"), bool):
            detail["stop_hook_active"] = event["stop_hook_active"]
        self.audit.record(GUEST, decision, reason=cut(tool, MAX_NAME) if isinstance(tool, str) else "", detail=detail)
        return JSONResponse({})


def answer_for(proposal: Proposal) -> Answer:
    """The tool result: the answer in words the model acts on, and as fields."""
    note = f" Operator's note: {proposal.answer_note}" if proposal.answer_note else ""
    granted = proposal.answer_value
    if proposal.status == "approved":
        text = f"Approved: {granted} is now allowed; retry." if proposal.kind == "egress" else "Approved by the operator."
    elif proposal.status == "modified":
        text = f"Approved with a change: the operator allowed {granted} instead of {proposal.what}."
    elif proposal.status == "rejected":
        text = "Rejected by the operator; carry on without it."
    else:  # expired: the note is the queue's, not the operator's
        text, note = f"The request expired ({proposal.answer_note}). Carry on without it, or ask again later.", ""
    return Answer(proposal=proposal.id, status=proposal.status, granted=granted, note=proposal.answer_note,
                  message=text + note)


def check_host(host: str) -> str:
    """*host* as an allow rule HOST[:PORT], or a ToolError saying what is wrong with it."""
    text = host.strip().lower()
    problem = (
        "has a scheme" if "://" in text
        else "contains a space" if any(char.isspace() for char in text)
        else "has user information (@)" if "@" in text
        else "has a path, query or fragment" if any(char in text for char in "/?#")
        else None
    )
    if problem is None:
        try:
            parse_rule(text)
        except RuleError as err:
            problem = f"is not a valid allow rule ({err})"
    if problem:
        raise ToolError(f"request_egress: host {host!r} {problem}; give HOST or HOST:PORT, "
                        "such as api.example.com or api.example.com:8443")
    return text


class HookInputError(ValueError):
    """Hook input that is not a JSON object of at most MAX_HOOK_BODY bytes."""


async def read_hook_input(request: Request) -> dict:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_HOOK_BODY:
            raise HookInputError(f"more than {MAX_HOOK_BODY} bytes")
    try:
        event = json.loads(body)
    except ValueError as err:
        raise HookInputError(f"not JSON: {err}") from None
    if not isinstance(event, dict):
        raise HookInputError("not a JSON object")
    return event


def permission(decision: str, reason: str) -> JSONResponse:
    return JSONResponse({"hookSpecificOutput": {
        "hookEventName": "PreToolUse", "permissionDecision": decision, "permissionDecisionReason": reason,
    }})


def tool_detail(event: dict) -> dict:
    """What the audit keeps of a hook event: ids and the tool's name, cut to MAX_NAME,
    and its input as JSON, cut to AUDIT_INPUT."""
    detail = {key: cut(event[key], MAX_NAME)
              for key in ("session_id", "tool_use_id", "tool_name") if isinstance(event.get(key), str)}
    if "tool_input" in event:
        detail["tool_input"] = cut(json.dumps(event["tool_input"], sort_keys=True, ensure_ascii=False), AUDIT_INPUT)
    return detail


def summary(tool: str, tool_input: Any) -> str:
    """One line for ``bottle audit``: the tool and the telling part of its input."""
    if isinstance(tool_input, dict):
        telling = next((tool_input[k] for k in ("command", "file_path", "url", "pattern", "path")
                        if isinstance(tool_input.get(k), str)), None)
        text = telling if telling is not None else json.dumps(tool_input, sort_keys=True, ensure_ascii=False)
    else:
        text = json.dumps(tool_input, ensure_ascii=False)
    return f"{cut(tool, MAX_NAME)}: {cut(' '.join(text.split()), SUMMARY)}"


class SuperviseMCP(MCPServer):
    """The SDK's server, whose argument errors read as one line per argument,
    without pydantic's links, and whose own tool errors keep their message as
    raised (the SDK prefixes both with "Error executing tool NAME")."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context=None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK tells the agent no more than the tool's name
        except ToolError as err:
            cause = err.__cause__
            if isinstance(cause, ValidationError):
                problems = "; ".join(_explain(error) for error in cause.errors())
                raise ToolError(f"{name}: bad arguments: {problems}") from None
            if isinstance(cause, ToolError):
                raise cause from None
            raise


def _explain(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    if error["type"] == "missing":
        return f"{where} is required"
    return f"{where}: {error['msg']} (got {type(error['input']).__name__})"


def configure_logging() -> None:
    """Plain one-line warnings on stderr (the init relays them); the SDK's own
    set-up then leaves the root logger alone."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def build_app(supervisor: Supervisor) -> Starlette:
    """The ASGI app: the MCP endpoint at /mcp and the hook endpoints.

    A request to /mcp over ``MAX_MCP_BODY``, declared or as it arrives, is
    answered 413 by the SDK, which would otherwise read it whole, however
    long; the hooks bound their own bodies, reading them as they come.
    """
    mcp = SuperviseMCP(name="bottle-supervise", instructions=INSTRUCTIONS, log_level="WARNING")

    @mcp.tool()
    async def request_egress(
        host: Annotated[str, Field(min_length=1, max_length=300,
                                   description="HOST or HOST:PORT (HTTPS), e.g. pypi.org; no scheme, no path.")],
        reason: Reason,
    ) -> Answer:
        """Ask the operator to let this sandbox reach a network host that is blocked.

        If approved, the host is allowed before this returns: retry your request.
        """
        return await supervisor.ask("egress", check_host(host), reason)

    @mcp.tool()
    async def request_capability(
        what: Annotated[str, Field(min_length=1, max_length=MAX_TEXT,
                                   description="What is missing, e.g. a package, a tool, a credential, more memory.")],
        reason: Reason,
    ) -> Answer:
        """Ask the operator for something the sandbox lacks (a package, a tool, an access)."""
        return await supervisor.ask("capability", what, reason)

    @mcp.tool()
    async def report_blocked(
        text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT,
                                   description="What blocks you and what you would need.")],
    ) -> Answer:
        """Tell the operator you are blocked by something no other tool covers, and wait for their answer."""
        return await supervisor.ask("blocked", text, "")

    mcp.custom_route("/hooks/pre-tool-use", methods=["POST"])(supervisor.pre_tool_use)
    mcp.custom_route("/hooks/post-tool-use", methods=["POST"])(supervisor.post_tool_use)
    mcp.custom_route("/hooks/stop", methods=["POST"])(supervisor.stop)
    return mcp.streamable_http_app(
        max_request_body_size=MAX_MCP_BODY,
        # Rebinding protection guards servers a browser can be tricked into
        # calling; this one is on the bottle's internal network, reached by a
        # name (the sidecar's alias) it is not told.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )


class Server(uvicorn.Server):
    """Uvicorn that announces readiness and, once stopped, expires what is left unanswered."""

    def __init__(self, config: uvicorn.Config, supervisor: Supervisor):
        super().__init__(config)
        self.supervisor = supervisor

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit and sockets:
            host, port = sockets[0].getsockname()[:2]
            print(f"bottle-supervise: listening on {host}:{port}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        self.supervisor.close("the bottle stopped")


def load_deny(path: str | None) -> list[DenyRule]:
    if path is None:
        return []
    with open(path) as file:
        return parse_rules(json.load(file))


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bottle_supervise_sidecar.server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=8765, help="0 picks a free port (printed when ready)")
    parser.add_argument("--queue", required=True, help="the proposal queue (SQLite), shared with the host")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    parser.add_argument("--bottle", required=True, help="this bottle's slug")
    parser.add_argument("--agent", required=True, help="the agent's name, shown to the operator")
    parser.add_argument("--answer-timeout", type=float, default=600.0, help="seconds a tool waits for an answer")
    parser.add_argument("--deny", help="PreToolUse deny rules, a JSON list (see deny_rules)")
    parser.add_argument("--hook-rate", type=float, default=HOOK_RATE, help="hook events a second, on average")
    parser.add_argument("--hook-burst", type=int, default=HOOK_BURST, help="hook events at once")
    parser.add_argument("--ask-rate", type=float, default=ASK_RATE, help="asks a second, on average")
    parser.add_argument("--ask-burst", type=int, default=ASK_BURST, help="asks at once")
    parser.add_argument("--max-pending", type=int, default=MAX_PENDING, help="asks waiting for the operator at once")
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"bottle-supervise: {message}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        deny = load_deny(args.deny)
    except (OSError, ValueError) as err:  # DenyRuleError and JSON errors are ValueErrors
        return fail(f"cannot read the deny rules {args.deny}: {err}")
    try:
        hooks = Limit("hook events", TokenBucket(args.hook_rate, args.hook_burst))
        asks = Limit("asks", TokenBucket(args.ask_rate, args.ask_burst))
    except ValueError as err:
        return fail(str(err))
    if args.max_pending < 1:
        return fail(f"--max-pending must be at least 1, not {args.max_pending}")
    try:
        queue = Queue(args.queue)
        audit = AuditLog(args.audit, args.bottle)
        sock = listen(args.listen_host, args.listen_port)
    except (OSError, sqlite3.Error) as err:
        return fail(f"cannot start: {err}")
    configure_logging()
    supervisor = Supervisor(queue, audit, args.bottle, args.agent, args.answer_timeout, deny, hooks, asks,
                            args.max_pending)
    config = uvicorn.Config(
        build_app(supervisor), log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    # Uvicorn stops gracefully on SIGTERM, then raises it again for the handler
    # it found: make that one a clean exit, as a requested stop is not a failure.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    watch = BudgetWatch(supervisor, args.audit)
    watch.start()
    try:
        Server(config, supervisor).run(sockets=[sock])
    finally:
        watch.stopped.set()
        audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
