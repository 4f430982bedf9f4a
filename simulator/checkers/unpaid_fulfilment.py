"""no_unpaid_fulfilment: fulfilment only for a session Stripe had recorded as paid at that moment."""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_unpaid_fulfilment"


class NoUnpaidFulfilment:
    name = NAME
    types = frozenset({"stripe.session", "fulfilment"})

    def __init__(self) -> None:
        self.paid: set[str] = set()
        self.found: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "stripe.session":
            if entry.get("payment_status") in ("paid", "no_payment_required"):
                self.paid.add(entry["id"])
            return
        if entry.get("session_id") not in self.paid:
            self.found.append(
                Violation(
                    NAME,
                    f"purchase {entry['purchase_id']} fulfilled while session {entry.get('session_id')} was not paid",
                    at=entry["t"],
                    evidence=(entry["seq"],),
                    purchase_id=entry["purchase_id"],
                    session_id=entry.get("session_id"),
                )
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, self.found)
