"""The supervise plugin's profile table ``[supervise]``: merged field by field over ``extends``."""

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from bottle.manifests.tables import ProfileTable


class SuperviseConfig(BaseModel):
    """``[supervise]``: the channel through which the agent asks and the operator answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False
    answer_timeout: StrictInt = Field(600, gt=0, le=86400, description="seconds a request waits for an answer")
    deny: tuple[dict, ...] = Field((), description='PreToolUse deny rules: {tool, pattern, field, reason}')

    @field_validator("deny")
    @classmethod
    def _rules(cls, rules: tuple[dict, ...]) -> tuple[dict, ...]:
        from bottle_supervise_sidecar.deny_rules import DenyRuleError, parse_rules

        try:
            parse_rules(list(rules))
        except DenyRuleError as err:
            raise ValueError(str(err)) from None
        return rules


TABLES = (ProfileTable(key="supervise", model=SuperviseConfig, default=SuperviseConfig),)
