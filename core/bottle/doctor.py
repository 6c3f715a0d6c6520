"""A plugin's part of ``bottle doctor`` (``bottle_doctor``): what it found, for people and for scripts."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DoctorSection:
    """*data* goes under *key* in ``bottle doctor --json``; *lines* are printed as they are."""

    key: str
    data: Any
    lines: tuple[str, ...] = field(default=())
