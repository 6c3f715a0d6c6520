"""The egress plugin's part of the plan: the proxy's policy, its credential routes (names and placeholders only)."""

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from bottle.plan import Frozen, PlanSection, ReadOnlyMap, SidecarPlan
from bottle_egress.tables import BudgetConfig, SecretExempt, SecretMode

PROXY_PORT = 3128


class CredentialPlan(Frozen):
    """A credential route: the sidecar injects the host's ``env`` value for ``host``:``port``, under ``path``.

    Only the name and the placeholder are in the plan; the value is read at
    launch and handed to the sidecar alone.
    """

    host: str
    port: int = 443
    path: str = Field("", description="a path prefix; empty: every path")
    header: str
    scheme: str
    env: str
    placeholder: str
    on_secret: SecretMode | None = Field(None, description="this host's mode for secrets; None: egress.on_secret's")


class EgressPlan(PlanSection):
    """The egress proxy: what the agent may reach, what is a secret, which credentials go where."""

    SECTION: ClassVar[str] = "egress"

    allow: tuple[str, ...]
    secret_patterns: tuple[str, ...]
    credentials: tuple[CredentialPlan, ...]
    trust: tuple[Path, ...] = Field(description="extra CA files the sidecar trusts upstream")
    on_secret: ReadOnlyMap = Field(
        default_factory=dict, description='host rule -> "block" or "redact"; the last match decides, none: block'
    )
    secret_exempt: SecretExempt = SecretExempt()
    proxy_port: int = PROXY_PORT
    ca_cert: Path = Field(description="host path of the bottle CA's certificate (public), written at launch")
    budget: BudgetConfig | None = Field(None, description="the profile's [budget]; None: none")
    prices: dict[str, dict[str, float]] = Field(default_factory=dict, description="the model_prices setting, for the budget")

    def proxy_url(self, sidecar: SidecarPlan) -> str:
        return sidecar.url(self.proxy_port)

    def describe(self) -> list[tuple[str, str]]:
        rows = [("egress allow", ", ".join(self.allow) or "nothing")]
        if self.budget is not None:
            limits = [f"{self.budget.max_tokens} tokens" if self.budget.max_tokens else "",
                      f"${self.budget.max_usd:.2f} (estimated)" if self.budget.max_usd else ""]
            rows.append(("budget", f"{', '.join(filter(None, limits))} per {self.budget.per}"))
        for c in self.credentials:
            value = f"{c.scheme} ${c.env}" if c.scheme else f"${c.env}"
            place = f"{c.host}{'' if c.port == 443 else f':{c.port}'}{c.path}"  # as an allow rule has it, and the prefix
            rows.append(("credential", f"{place}: {c.header}: {value} (the agent's {c.env} is a placeholder)"))
        return rows
