"""The Docker backend's connection to a bottle's port (``ExecChannel``): the engine's frames, read back as the
server's bytes and the relay's error, over a real socket pair."""

import socket
import struct

from bottle_docker.backend import ExecChannel


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(data)) + data


def test_stdout_frames_are_the_servers_bytes_and_stderr_is_the_error():
    ours, engine = socket.socketpair()
    channel = ExecChannel(ours)
    engine.sendall(frame(1, b"HTTP/1.0 200 OK\r\n") + frame(2, b"a warning\n") + frame(1, b"\r\nbody"))
    engine.shutdown(socket.SHUT_WR)

    assert channel.recv() == b"HTTP/1.0 200 OK\r\n"
    assert channel.recv() == b"\r\nbody"
    assert channel.recv() == b"" and channel.error == "a warning"

    channel.send(b"GET / HTTP/1.0\r\n\r\n")
    channel.close_write()
    assert engine.recv(100) == b"GET / HTTP/1.0\r\n\r\n" and engine.recv(100) == b""
    channel.close()
    engine.close()


def test_a_frame_cut_short_ends_the_stream():
    ours, engine = socket.socketpair()
    engine.sendall(frame(1, b"whole") + frame(1, b"cut short")[:-3])
    engine.close()
    channel = ExecChannel(ours)
    assert channel.recv() == b"whole" and channel.recv() == b""
    channel.close()
