"""Fixtures shared by the unit, integration and end-to-end tests.

Integration tests need a real Docker engine and the images built by
``bottle image bootstrap`` / ``bottle image build``. Without them a test skips
on a developer's machine, but under ``CI=true`` it fails: a skipped test is
not a passed test.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when something an integration test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing engine or image is a failure, not a skip)")
    pytest.skip(reason)
