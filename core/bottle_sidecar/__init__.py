"""The sidecar kit: what every sidecar service uses, in the sidecar image and on the host alike.

This package has the same name in the image (``/opt/bottle/lib/bottle_sidecar``)
and on the host, and imports nothing of ``bottle``: the image holds the stdlib,
the services' own packages (each plugin's ``*_sidecar`` package, also the same
name in both places) and their pinned libraries.

- ``init``: starts the services the host asks for and stops them all when one dies.
- ``startup``: what every service checks at start (the credentials file).
- ``audit``: the log every service writes and ``bottle audit`` reads (stdlib only).
- ``secrets_scan``: finds token-shaped secrets in what leaves, or replaces them by markers.
- ``heap``: hands the memory of large bodies back to the kernel once they are done with.
- ``versions``: what the image runs on (Debian suite, Python, the pinned libraries),
  for its labels and its test (stdlib only).
"""
