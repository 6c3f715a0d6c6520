"""The supervise server: the bottled agent asks for more, the operator answers.

Run in the sidecar as::

    python -m bottle_sidecar.supervise --listen-host 0.0.0.0 --listen-port 8765
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
  Code's hook input (POSTed by a ``curl`` hook command) is recorded in the
  audit log, and PreToolUse is answered allow or deny by the ``--deny`` rules
  (see ``deny_rules``). PreToolUse input that cannot be read is denied.

Every ask, answer and hook event is audited with source ``supervise``.
The agent reaches this server and nothing else of the sidecar's state: the
queue and the audit log are files only the sidecar and the host can write.

In the image this is ``bottle_sidecar.supervise``; it imports its siblings
relatively and nothing else from bottle.
"""

import argparse
import json
import logging
import signal
import socket
import sqlite3
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from .audit import AuditLog
from .deny_rules import DenyRule, first_match, parse_rules
from .policy import RuleError, parse_rule
from .proposals import Proposal, ProposalError, Queue

SOURCE = "supervise"
MAX_TEXT = 2000  # characters in a reason, a capability or a report
MAX_HOOK_BODY = 16 * 1024 * 1024  # bytes of hook input (a Write carries the whole file)
AUDIT_INPUT = 4000  # characters of a tool's input kept in the audit log
SUMMARY = 200  # characters of a tool's input shown as the audit row's reason
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


@dataclass
class Supervisor:
    """The server's state: where proposals and events go, and the rules for hooks."""

    queue: Queue
    audit: AuditLog
    bottle: str
    agent: str
    answer_timeout: float
    deny: list[DenyRule]

    async def ask(self, kind: str, what: str, reason: str) -> Answer:
        """Queue a proposal and wait for its answer (in a thread: the wait polls SQLite)."""
        proposal_id = self.queue.propose(self.bottle, self.agent, kind, what, reason)
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

    def _record(self, proposal: Proposal, decision: str, reason: str) -> None:
        self.audit.record(
            SOURCE, decision,
            host=proposal.what if proposal.kind == "egress" else None,
            reason=reason,
            detail={"proposal": proposal.id, "kind": proposal.kind, "what": proposal.what, "agent": proposal.agent,
                    "granted": proposal.answer_value},
        )

    async def pre_tool_use(self, request: Request) -> JSONResponse:
        """Allow or deny a tool call; deny what cannot be read (fail closed)."""
        try:
            event = await read_hook_input(request)
            tool, tool_input = event.get("tool_name"), event.get("tool_input", {})
            if not isinstance(tool, str) or not tool:
                raise HookInputError("tool_name must be a non-empty string")
        except HookInputError as err:
            reason = f"supervise could not read the hook input ({err}), so the call is denied"
            self.audit.record(SOURCE, "tool-denied", reason=reason, detail={"event": "PreToolUse"})
            return permission("deny", reason)
        rule = first_match(self.deny, tool, tool_input)
        detail = {"event": "PreToolUse", **tool_detail(event)}
        if rule is None:
            self.audit.record(SOURCE, "tool-call", reason=summary(tool, tool_input), detail=detail)
            return permission("allow", "no supervise deny rule matches")
        # The agent learns the rule's reason, not its pattern (which would tell
        # it how to phrase the call past it); the audit log keeps the whole rule.
        reason = "denied by the operator's supervise rules" + (f": {rule.reason}" if rule.reason else "")
        self.audit.record(SOURCE, "tool-denied", reason=f"{summary(tool, tool_input)} ({reason})",
                          detail={**detail, "rule": rule.text})
        return permission("deny", reason)

    async def post_tool_use(self, request: Request) -> JSONResponse:
        return await self._observe(request, "tool-result", "PostToolUse")

    async def stop(self, request: Request) -> JSONResponse:
        return await self._observe(request, "stop", "Stop")

    async def _observe(self, request: Request, decision: str, hook: str) -> JSONResponse:
        """Record an event that needs no decision; answer with no output for Claude Code."""
        try:
            event = await read_hook_input(request)
        except HookInputError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        tool = event.get("tool_name")
        detail = {"event": hook, **tool_detail(event)}
        if hook == "Stop":
            detail["stop_hook_active"] = event.get("stop_hook_active")
        self.audit.record(SOURCE, decision, reason=tool if isinstance(tool, str) else "", detail=detail)
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
    """What the audit keeps of a hook event: ids, the tool and its input, cut to AUDIT_INPUT."""
    detail = {key: event[key] for key in ("session_id", "tool_use_id", "tool_name") if isinstance(event.get(key), str)}
    if "tool_input" in event:
        text = json.dumps(event["tool_input"], sort_keys=True, ensure_ascii=False)
        detail["tool_input"] = text[:AUDIT_INPUT]
        if len(text) > AUDIT_INPUT:
            detail["tool_input_cut"] = True
    return detail


def summary(tool: str, tool_input: Any) -> str:
    """One line for ``bottle audit``: the tool and the telling part of its input."""
    if isinstance(tool_input, dict):
        telling = next((tool_input[k] for k in ("command", "file_path", "url", "pattern", "path")
                        if isinstance(tool_input.get(k), str)), None)
        text = telling if telling is not None else json.dumps(tool_input, sort_keys=True, ensure_ascii=False)
    else:
        text = json.dumps(tool_input, ensure_ascii=False)
    text = " ".join(text.split())
    return f"{tool}: {text[:SUMMARY]}{'…' if len(text) > SUMMARY else ''}"


class SuperviseMCP(FastMCP):
    """FastMCP whose argument errors read as one line per argument, without
    pydantic's links, and whose own tool errors keep their message as raised."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
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


class _QuietSessionEnd(logging.Filter):
    """Drops the traceback the MCP SDK (1.30) logs as an error each time a client
    ends its session while its event stream is open, as the SDK's own client
    does on every exit: a normal end that would bury real errors in the
    sidecar's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage() == "Error in standalone SSE writer"
                    and isinstance(error, anyio.ClosedResourceError))


def configure_logging() -> None:
    """Plain one-line warnings on stderr (the init relays them); FastMCP's own
    set-up then leaves the root logger alone."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mcp.server.streamable_http").addFilter(_QuietSessionEnd())


def build_app(supervisor: Supervisor) -> Starlette:
    """The ASGI app: the MCP endpoint at /mcp and the hook endpoints."""
    mcp = SuperviseMCP(
        name="bottle-supervise",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        # Rebinding protection guards servers a browser can be tricked into
        # calling; this one is on the bottle's internal network, reached by a
        # name (the sidecar's alias) it is not told.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

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
    return mcp.streamable_http_app()


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
        self.supervisor.expire_all("the bottle stopped")


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
    parser = argparse.ArgumentParser(prog="bottle_sidecar.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="0.0.0.0")
    parser.add_argument("--listen-port", type=int, default=8765, help="0 picks a free port (printed when ready)")
    parser.add_argument("--queue", required=True, help="the proposal queue (SQLite), shared with the host")
    parser.add_argument("--audit", required=True, help="the audit log (SQLite)")
    parser.add_argument("--bottle", required=True, help="this bottle's slug")
    parser.add_argument("--agent", required=True, help="the agent's name, shown to the operator")
    parser.add_argument("--answer-timeout", type=float, default=600.0, help="seconds a tool waits for an answer")
    parser.add_argument("--deny", help="PreToolUse deny rules, a JSON list (see deny_rules)")
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
        queue = Queue(args.queue)
        audit = AuditLog(args.audit, args.bottle)
        sock = listen(args.listen_host, args.listen_port)
    except (OSError, sqlite3.Error) as err:
        return fail(f"cannot start: {err}")
    configure_logging()
    supervisor = Supervisor(queue, audit, args.bottle, args.agent, args.answer_timeout, deny)
    config = uvicorn.Config(
        build_app(supervisor), log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    # Uvicorn stops gracefully on SIGTERM, then raises it again for the handler
    # it found: make that one a clean exit, as a requested stop is not a failure.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        Server(config, supervisor).run(sockets=[sock])
    finally:
        audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
