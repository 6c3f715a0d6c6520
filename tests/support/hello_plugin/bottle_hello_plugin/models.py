"""The hello plugin's values: its profile table and its part of the plan.

Pydantic models, in a module of their own that the hooks import when they
run: every plugin's module is imported for ``bottle --help``, so it must not
pay for pydantic (``bottle.hookspecs``).
"""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bottle.plan import PlanSection

#: Where the guest reaches the service in the sidecar.
PORT = 8900


class HelloConfig(BaseModel):
    """The profile's ``[hello]`` table. ``extra="forbid"``: a misspelt field is an error naming the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str = Field(min_length=1, max_length=200, description="what the service answers the guest")


class HelloPlan(PlanSection):
    """What the launch-time hooks need, decided at plan time (``bottle run --dry-run --json`` shows it)."""

    SECTION: ClassVar[str] = "hello"

    greeting: str
    url: str = Field(description="the service as the guest reaches it")
