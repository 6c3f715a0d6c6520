"""The sidecar runtime: the daemons that run beside a bottle, outside the agent's reach.

This package is copied into the sidecar image as the top-level package
``bottle_sidecar`` and imported on the host as ``bottle.sidecar``. So its
modules import each other only relatively and nothing from the rest of
``bottle``: the image holds the stdlib, mitmproxy, detect-secrets, mcp and this.

- ``init``: starts the daemons the host asks for and stops them all when one dies.
- ``egress``: the egress proxy (a mitmproxy addon and its command line).
- ``policy``: the egress policy file, its rule syntax and the address classes
  no rule reaches by name (stdlib only: the host validates profiles with it).
- ``secrets_scan``: finds token-shaped secrets in outgoing requests, or replaces them by markers.
- ``audit``: the log every daemon writes and ``bottle audit`` reads (stdlib only).
- ``startup``: what every daemon checks at start (the credentials file).
- ``gitgate`` and ``gitgate_check``: the git gate (smart HTTP, pre-receive checks,
  forwarding upstream) and its ref, size and secret checks (stdlib only).
- ``supervise``: the MCP server the agent asks through, and the hook endpoints.
- ``proposals``: the operator's queue of asks, shared by all bottles (stdlib only).
- ``deny_rules``: the PreToolUse deny rules of ``[supervise] deny`` (stdlib only).
- ``versions``: what the image runs on (Debian suite, Python, mitmproxy, h11, mcp,
  detect-secrets), for its labels and its test (stdlib only).
"""
