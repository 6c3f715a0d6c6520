"""What metering adds to a Messages reply: the sidecar's ``SseMeter`` against a pass-through in the same run.

Prints the median milliseconds per reply of handing a streamed reply's chunks
on (one event per chunk, as the API sends them) through the meter and
through an identity function, and the difference; and of reading a whole
JSON reply's usage. Replies of 50, 500 and 5000 text deltas. Goal (issue
"Usage and budgets"): at most 0.2 ms added at p50 per request.

Stdlib only, so that it runs on the sidecar image's Python, which is what counts:

    flock /tmp/bottle-engine.lock docker run --rm --network none -v "$PWD":/src:ro -e HOME=/tmp -w /src \\
        --entrypoint python bottle/sidecar:latest -m benchmarks.metering [--repeats N]
"""

import argparse
import json
import statistics
import sys
import time

from bottle_egress_sidecar.metering import SseMeter, message_usage


def event(payload: dict) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def reply(deltas: int) -> list[bytes]:
    usage = {"input_tokens": 24000, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    chunks = [event({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
                                                           "model": "claude-sonnet-4-5", "content": [], "usage": usage}}),
              event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    chunks += [event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word " * 4}})
               for _ in range(deltas)]
    chunks += [event({"type": "content_block_stop", "index": 0}),
               event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": deltas}}),
               event({"type": "message_stop"})]
    return chunks


def per_reply_ms(handle, chunks: list[bytes], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        stream = handle()
        for chunk in chunks:
            stream(chunk)
        stream(b"")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=201)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}: ms per reply, median of {args.repeats}")
    print(f"{'reply':>14} {'pass-through':>13} {'metered':>8} {'added':>7}")
    for deltas in (50, 500, 5000):
        chunks = reply(deltas)
        plain = per_reply_ms(lambda: (lambda chunk: chunk), chunks, args.repeats)
        metered = per_reply_ms(lambda: SseMeter(lambda usage: None), chunks, args.repeats)
        print(f"{deltas:>7} deltas {plain:13.3f} {metered:8.3f} {metered - plain:7.3f}")
    whole = json.dumps({"type": "message", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "x" * 2000}],
                        "usage": {"input_tokens": 24000, "output_tokens": 500}}).encode()
    started = time.perf_counter()
    for _ in range(args.repeats):
        message_usage(whole)
    print(f"a whole 2 KB JSON reply's usage: {(time.perf_counter() - started) / args.repeats * 1000:.3f} ms")


if __name__ == "__main__":
    main()
