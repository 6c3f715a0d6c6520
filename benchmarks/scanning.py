"""How fast the secret scanner goes over large bodies, against its old self in the same run.

Prints, for bodies of 1, 8 and 32 MB, the MB/s of ``Scanner.scan_request`` as the
proxy calls it, three ways: ``regex.finditer`` for every detector (the first
scanner); the exact scan alone (the detectors whose patterns begin with two
literal bytes or more found by ``bytes.find``, see ``_walk``), which is the
scanner where Hyperscan is not installed; and the scanner as it is, Hyperscan's
prefilter first (``_Prefilter``), with its ratio to the exact scan alone. The bodies: a Messages API request (JSON: system prompt,
tools, source files read back in tool results, screenshots in base64, a
quarter of the bytes) and plain random text (words of letters and digits).
Neither holds a secret, so every scan goes through the whole body; one that
finds something stops the run.

Stdlib only, so that it runs on the sidecar image's Python (which is what
counts) as well as the host's:

    flock /tmp/bottle-engine.lock docker run --rm --network none -v "$PWD":/src:ro -e HOME=/tmp -w /src \\
        bottle/sidecar-test:TAG python -m benchmarks.scanning [--repeats N]
    .venv/bin/python -m benchmarks.scanning
"""

import argparse
import base64
import json
import random
import statistics
import string
import sys
import sysconfig
import time
from pathlib import Path

from bottle_sidecar.secrets_scan import Scanner, _View

MB = 1_000_000
URL = b"https://api.anthropic.com/v1/messages?beta=true"


def messages_body(size: int, rng: random.Random) -> bytes:
    """A Messages API request of about *size* bytes: source files of this Python's standard library read
    back, 100 KB each, and after every three a screenshot of as much (random bytes in base64, as a PNG's are)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = "".join(path.read_text(errors="replace") for path in sorted(stdlib.glob("*.py")))
    messages, total = [], 0
    while total < size:
        if len(messages) % 4 == 3:
            content = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                   "data": base64.b64encode(rng.randbytes(75_000)).decode()}}
        else:
            content = {"type": "tool_result", "tool_use_id": f"toolu_01{rng.getrandbits(64):016x}",
                       "content": code[(start := rng.randrange(len(code) - 100_000)):start + 100_000]}
        messages.append({"role": "user", "content": [content]})
        total += len(json.dumps(content))
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 32000, "system": "You are Claude Code. " * 200,
                       "messages": messages}).encode()


def text_body(size: int, rng: random.Random) -> bytes:
    """About *size* bytes of words of random letters and digits, a line every dozen words."""
    alphabet = string.ascii_letters + string.digits
    words = ["".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(50_000)]
    lines = [" ".join(rng.choices(words, k=12)) for _ in range(size // 80 + 1)]
    return "\n".join(lines).encode()[:size]


def seconds(scan, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scan()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng, scanner, exact, reference = random.Random(13), Scanner(), Scanner(), Scanner()
    for unfiltered in (exact, reference):
        unfiltered._view = lambda raw, codec: (_View.of(raw, codec), None)  # no prefilter: all scan exactly
    reference._needles = [None] * len(reference._detectors)  # every detector by finditer, as at first
    print(f"Python {sys.version.split()[0]}: MB/s of Scanner.scan_request, median of {args.repeats}")
    print(f"{'body':>18} {'finditer':>9} {'exact':>7} {'now':>7} {'now/exact':>10}")
    for kind, make, media in (("messages", messages_body, b"application/json"), ("text", text_body, b"text/plain")):
        for size in (1, 8, 32):
            body = make(size * MB, rng)
            headers = [(b"host", b"api.anthropic.com"), (b"content-type", media)]
            if (hit := scanner.scan_request(URL, headers, body)) is not None:
                raise SystemExit(f"the {kind} body of {len(body)} bytes has a false positive: {hit}")
            first, walked, now = (seconds(lambda: each.scan_request(URL, headers, body), args.repeats)
                                  for each in (reference, exact, scanner))
            rates = " ".join(f"{len(body) / taken / MB:{width}.0f}" for taken, width in ((first, 9), (walked, 7), (now, 7)))
            print(f"{kind:>9} {size:>5} MB {rates} {walked / now:10.2f}")


if __name__ == "__main__":
    main()
