"""The gate's upload-pack and receive-pack for a local upstream, which the host runs.

The sidecar has no access to a local upstream (see ``bottle_git.upstream_relay``):
the gate's git runs this instead of ``git-upload-pack`` / ``git-receive-pack``
(``--upload-pack`` / ``--receive-pack``)::

    python -IS upstream_pipe.py SOCKET upload-pack|receive-pack [PATH]

It hands its stdin, stdout and stderr to the host over the Unix socket SOCKET,
so that the host's git speaks the pack protocol with the gate's git directly,
lets go of them, and exits with the host's git's exit code (128 when the host
does not answer). PATH, which git appends, is not sent: the host serves one
repository.

Stdlib only, and run as a script: in the sidecar image it is a file of ``bottle_sidecar``.
"""

import os
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: upstream_pipe.py SOCKET upload-pack|receive-pack [PATH]\n")
        return 2
    path, verb = argv[:2]
    try:
        with socket.socket(socket.AF_UNIX) as relay:
            relay.connect(path)
            socket.send_fds(relay, [f"{verb} {os.environ.get('GIT_PROTOCOL', '')}\n".encode()], [0, 1, 2])
            # The host's git holds them now: the gate's git sees the stream end when that one is done.
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            answer = relay.makefile("rb").readline()
    except OSError as err:
        sys.stderr.write(f"fatal: bottle: the host does not serve the local upstream ({err})\n")
        return 128
    return int(answer) if answer.strip().isdigit() else 128


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
