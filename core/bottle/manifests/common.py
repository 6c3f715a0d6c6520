"""Shared by the manifest loaders: names, validation with file-naming errors."""

import re
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, StringConstraints, ValidationError

from bottle.errors import UsageError
from bottle.validation import describe_errors

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

#: Environment tables map variable names to plain strings.
EnvMap = dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str]
_NAME = re.compile(NAME_PATTERN)

Model = TypeVar("Model", bound=BaseModel)


def check_name(name: str, what: str) -> str:
    """Names become file names and labels: no ``/``, no ``..``, no surprises."""
    if not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"Invalid {what} name {name!r}: expected letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit; no '/' or '..')."
        )
    return name


def validate(model: type[Model], data: object, path: Path, what: str) -> Model:
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected the {what} to be a mapping of fields, got {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"{path}: invalid {what}:\n{describe_errors(err)}") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from None
