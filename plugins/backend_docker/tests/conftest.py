"""The unit tests' fixtures (``tests/support/unit_home.py``): an isolated home, manifest writers, the real CLI."""

from tests.support.unit_home import *  # noqa: F401,F403 -- pytest finds the fixtures by name here
