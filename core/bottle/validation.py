"""Turn pydantic validation errors into lines a person can act on.

Every manifest error names the file, the field and what was expected, in one
short paragraph, never a traceback.
"""

from pydantic import ValidationError


def field_path(loc: tuple) -> str:
    """``env.LD_PRELOAD`` for a problem with a mapping's key (pydantic adds ``[key]``)."""
    return ".".join(str(part) for part in loc if part != "[key]") or "(top level)"


def describe_errors(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        where = field_path(problem["loc"])
        if problem["type"] == "extra_forbidden":
            lines.append(f"  field `{where}`: unknown key (not one of the fields this file may have)")
        elif problem["type"] == "missing":
            lines.append(f"  field `{where}`: required but missing")
        else:
            lines.append(f"  field `{where}`: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)
