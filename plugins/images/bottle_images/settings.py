"""The images plugin's settings (``bottle_register_settings``): what ``bottle image bootstrap|build`` build from.

They are keys of bottle's settings like the core's (flags > ``BOTTLE_*`` >
config.toml > defaults): ``BOTTLE_DEBIAN_SUITE``, ``image_base = ...``.
"""

from pathlib import Path

from pydantic import BaseModel, Field, model_validator


class ImageSettings(BaseModel):
    image_base: str | None = Field(
        None,  # filled in from debian_suite: see _base_of_the_suite
        description="base image both images build on (default: debian:SUITE-slim, SUITE being debian_suite)",
    )
    debian_suite: str = Field(
        "trixie", description="Debian suite `bottle image bootstrap` makes the base from (the sidecar needs "
        "trixie, Debian 13, or later: its mitmproxy needs Python 3.12)",
    )
    build_ca_certs: list[Path] | None = Field(
        None, description="extra CA certificates trusted while building images (default: the host's)"
    )
    build_keep_ca: bool = Field(False, description="leave the build CAs in the final image")
    claude_code_version: str = Field("2.1.332", description="Claude Code npm version baked into the agent image")

    @model_validator(mode="after")
    def _base_of_the_suite(self) -> "ImageSettings":
        """The base image is named after its suite, so bases of two suites live side by side."""
        if self.image_base is None:
            self.image_base = f"debian:{self.debian_suite}-slim"
        return self
