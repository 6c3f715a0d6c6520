"""What a headless run keeps of the agent's output (``bottle.transcript``): all it wrote to our streams, bounded."""

import io
import sys

from bottle import transcript


class Terminal(io.TextIOWrapper):
    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8")


def test_what_reaches_our_streams_is_kept_and_still_reaches_them(tmp_path, monkeypatch):
    out, err = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)

    with transcript.kept(tmp_path):
        sys.stdout.buffer.write(b'{"type":"result"}\n')
        sys.stderr.buffer.write(b"warning\n")
        sys.stdout.buffer.flush()
    sys.stdout.buffer.write(b"after\n")  # bottle's own, once the agent is done: not the agent's

    assert sys.stdout is out and sys.stderr is err
    assert out.buffer.getvalue() == b'{"type":"result"}\nafter\n' and err.buffer.getvalue() == b"warning\n"
    assert transcript.log_path(tmp_path, "stdout").read_bytes() == b'{"type":"result"}\n'
    assert transcript.log_path(tmp_path, "stderr").read_bytes() == b"warning\n"


def test_past_the_limit_the_rest_passes_through_and_is_not_kept(tmp_path, monkeypatch):
    out = Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(transcript, "LIMIT", 10)

    with transcript.kept(tmp_path):
        sys.stdout.buffer.write(b"0123456")
        sys.stdout.buffer.write(b"789abcdef")
        sys.stdout.buffer.write(b"more")

    assert out.buffer.getvalue() == b"0123456789abcdefmore"
    assert transcript.log_path(tmp_path, "stdout").read_bytes() == b"0123456789" + transcript.CUT
