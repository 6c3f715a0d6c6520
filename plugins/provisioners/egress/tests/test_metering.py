"""Metering (``bottle_egress_sidecar.metering``): a reply's usage read beside the stream, chunk by chunk as it
comes, and the budget's arithmetic; the proxy's use of it is in test_egress_proxy.py."""

import json

import pytest

from bottle_egress_sidecar import metering
from bottle_egress_sidecar.metering import Budget, Ledger, SseMeter, Usage, budget_error, message_usage


def events(*payloads: dict) -> bytes:
    return b"".join(b"event: x\ndata: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


STREAM = events(
    {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {
        "input_tokens": 900, "output_tokens": 1, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 20}}},
    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "message_delta", "usage": {"output_tokens": 12}},
    {"type": "message_delta", "usage": {"output_tokens": 44}},
    {"type": "message_stop"},
)


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_every_chunk_passes_unchanged_and_the_usage_is_read_beside(size):
    got = []
    meter = SseMeter(got.append)
    passed = [meter(STREAM[i:i + size]) for i in range(0, len(STREAM), size)]
    assert b"".join(passed) == STREAM and not got, "nothing is reported before the end"
    assert meter(b"") == b""
    assert got == [Usage("claude-sonnet-4-5", 900, 44, 10, 20)] and got[0].tokens == 974


def test_a_stream_that_is_no_messages_reply_reports_nothing_and_a_huge_line_is_skipped(monkeypatch):
    got = []
    meter = SseMeter(got.append)
    meter(b"data: {not json}\n\n" + events({"type": "ping"}))
    meter(b"")
    assert got == []

    monkeypatch.setattr(metering, "LINE_LIMIT", 100)
    meter = SseMeter(got.append)
    meter(b"data: " + b"x" * 150)  # no newline yet: past the limit, dropped, not kept
    assert len(meter._line) == 0
    meter(b"x" * 50 + b"\n" + STREAM)  # the rest of the long line is skipped; what follows is read
    meter(b"")
    assert got and got[0].output_tokens == 44


def test_hostile_counts_are_ignored():
    usage = Usage()
    usage.take({"input_tokens": -5, "output_tokens": "9", "cache_read_input_tokens": True, "x": 1})
    assert usage == Usage()


def test_a_whole_reply():
    body = json.dumps({"type": "message", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()
    assert message_usage(body) == Usage("m", 3, 4)
    assert message_usage(b'{"type": "error"}') is None and message_usage(b"not json") is None


def test_the_budget_prices_by_the_longest_prefix_and_says_when_it_is_spent():
    prices = {"claude-opus-4": {"input_tokens": 15, "output_tokens": 75},
              "claude-opus-4-5": {"input_tokens": 5, "output_tokens": 25}}
    budget = Budget(max_tokens=2000, max_usd=0.05, prices=prices)
    ledger = Ledger()
    for usage, cost in ((Usage("claude-opus-4-5-20251101", 1000, 100), 0.0075), (Usage("claude-opus-4-1", 1000, 0), 0.015),
                        (Usage("other", 5, 5), None)):
        assert budget.cost(usage) == (cost and pytest.approx(cost))
        ledger.add(usage, budget.cost(usage))
    assert (ledger.tokens, round(ledger.usd, 4)) == (2110, 0.0225)
    assert budget.spent(ledger.tokens, ledger.usd) == "its budget of 2000 tokens is spent (2110 used)"
    assert Budget(max_usd=0.02).spent(10, 0.0225) == "its budget of $0.02 is spent ($0.02 used, estimated)"
    assert Budget(max_tokens=5000).spent(2110, 0) is None


def test_the_refusal_is_the_messages_apis_own_error_shape():
    error = json.loads(budget_error("x-1", "its budget of 10 tokens is spent (12 used)"))
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("bottle x-1: its budget of 10 tokens is spent (12 used).")
