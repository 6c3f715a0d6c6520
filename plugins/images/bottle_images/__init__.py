"""Local images for bottle: a Debian base made from the host's own mirrors, and the agent image.

No container registry is assumed to be reachable, so the base image is
bootstrapped with mmdebstrap from the apt mirrors the host already uses
(:mod:`.bootstrap`), and the agent and sidecar images are built on top of it
with the engine's classic builder (:mod:`.build`), the sidecar's labelled with
what it runs on and the format of image this bottle runs. Extra CA certificates the host trusts (for a
TLS-intercepting proxy) are trusted during the build but left out of the
result unless asked for.
"""
