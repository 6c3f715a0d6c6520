"""Shared by the manifest loaders: names, validation with file-naming errors."""

import re
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from bottle.errors import UsageError
from bottle.validation import describe_errors

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

_PROXY = "routes the guest's connections, which bottle points at the sidecar"
_TRUST = "decides which certificates the guest trusts, which bottle sets to the bottle's CA"
_CONFIG = "moves where the guest's programs (curl, git, the agent's CLI) read their settings from"
#: Variables an agent's or a profile's ``env`` may not set, and why: they change
#: how the guest's own programs run (the operator's hooks and the proxy settings
#: among them). An agent file comes with the repository under work; none of it
#: may decide how the bottle's own tools behave. Names are compared in upper case.
RESERVED_ENV = {
    **dict.fromkeys(("HOME", "CURL_HOME", "CLAUDE_CONFIG_DIR"), _CONFIG),
    **dict.fromkeys(("BASH_ENV", "ENV", "CLAUDE_ENV_FILE", "CLAUDE_CODE_SHELL_PREFIX"),
                    "runs code in the guest's shells"),
    **dict.fromkeys(("NODE_OPTIONS", "NODE_PATH"), "changes how the guest's Node programs start"),
    "PATH": "decides which programs the guest runs",
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY"), _PROXY),
    **dict.fromkeys(("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
                     "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "NODE_TLS_REJECT_UNAUTHORIZED"), _TRUST),
    **dict.fromkeys(("HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN"), "changes how the guest resolves names"),
}
RESERVED_ENV_PREFIXES = {
    "LD_": "changes which code the guest's programs load",
    "XDG_": _CONFIG,
}


def _allowed_env_name(name: str) -> str:
    upper = name.upper()
    why = RESERVED_ENV.get(upper) or next(
        (why for prefix, why in RESERVED_ENV_PREFIXES.items() if upper.startswith(prefix)), None
    )
    if why is not None:
        raise PydanticCustomError("env_reserved", "may not be set: it {why}; bottle decides it", {"why": why})
    return name


#: Environment tables map variable names to plain strings; a name may not be one bottle decides.
EnvMap = dict[
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), AfterValidator(_allowed_env_name)], str
]
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
