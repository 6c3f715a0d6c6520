"""What bottles used of the Messages API, as their sidecars metered it (``bottle usage``, ``bottle ls``), and
raising a running bottle's budget (``bottle egress budget``, an approved proposal).

The egress proxy writes one audit row per reply (decision ``metered``: model,
the four token counts, its estimated cost), so usage is read from each
bottle's audit log, which outlives its runs; nothing here asks the engine.
"""

from dataclasses import dataclass, field
from pathlib import Path

from bottle.errors import UsageError
from bottle.sidecar.runtime import audit_path
from bottle_egress.policy_file import change_live
from bottle_egress_sidecar.metering import FIELDS, METERED
from bottle_sidecar.audit import read_events


@dataclass
class Totals:
    """Tokens of each kind, requests and estimated dollars (None while no reply had a price)."""

    requests: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))
    usd: float | None = None

    def add(self, detail: dict) -> None:
        self.requests += 1
        for name in FIELDS:
            self.tokens[name] += int(detail.get(name) or 0)
        if detail.get("usd") is not None:
            self.usd = (self.usd or 0.0) + float(detail["usd"])

    @property
    def total(self) -> int:
        return sum(self.tokens.values())

    def as_dict(self) -> dict:
        return {"requests": self.requests, **self.tokens, "total_tokens": self.total,
                "usd": None if self.usd is None else round(self.usd, 6)}


def usage_of(state_dir: Path, since: float = 0.0) -> tuple[Totals, dict[str, Totals]]:
    """A bottle's usage from its audit log (replies after *since*, seconds since the epoch): in all, and by model."""
    total, models = Totals(), {}
    for event in read_events(audit_path(state_dir), decision=METERED):
        if event["source"] != "egress" or event["ts"] < since:
            continue
        detail = event["detail"] or {}
        total.add(detail)
        models.setdefault(str(detail.get("model") or "?"), Totals()).add(detail)
    return total, models


def change_budget(slug: str, max_tokens: int | None, max_usd: float | None, *, by: str) -> dict:
    """Set a bottle's budget (what is given replaces it; its proxy reads it on its next request)."""

    def change(document: dict) -> dict:
        budget = document.get("budget")
        if budget is None:
            raise UsageError(f"Bottle {slug!r} has no budget to raise: its profile sets no [budget].")
        if max_tokens is not None:
            budget["max_tokens"] = max_tokens
        if max_usd is not None:
            budget["max_usd"] = max_usd
        return {"max_tokens": budget.get("max_tokens"), "max_usd": budget.get("max_usd")}

    return change_live(slug, change, decision="budget-changed", reason=by)["budget"]
