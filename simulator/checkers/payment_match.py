"""payment_matches_purchase: a purchase completes only by its own session, paid in full.

"Its own": the Checkout Session the engine created for it, never one created outside the engine
that merely names it (the adversary's `adversary.foreign_session`, real and paid). "Paid in
full": Stripe recorded it paid, for the program's price, in mode payment. And an event the
engine must not honour (the adversary's `adversary.attack`: events for objects that do not
exist, completions of a purchase's session that are not paid in full) changes no purchase,
program or slot: a write made under its request is a violation.
"""

from __future__ import annotations

from typing import Any

from simulator.attacks import ATTACK_REQUEST
from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "payment_matches_purchase"
GUARDED = frozenset({"purchases", "programs", "purchase_slots"})


class PaymentMatchesPurchase:
    name = NAME
    types = frozenset({"adversary.foreign_session", "fulfilment", "store.write"})

    def __init__(self) -> None:
        self.foreign: dict[str, dict[str, Any]] = {}
        self.fulfilled: list[dict[str, Any]] = []
        self.found: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind == "adversary.foreign_session":
            self.foreign[entry["session_id"]] = entry
        elif kind == "fulfilment":
            self.fulfilled.append(entry)
        elif _attack_write(entry):
            self.found.append(
                Violation(
                    NAME,
                    f"{entry['req']}, an event that must not be honoured, changed "
                    f"{entry.get('coll')} {entry.get('id')} ({entry.get('op')})",
                    at=entry["t"],
                    evidence=(entry["seq"],),
                    purchase_id=entry.get("id") if entry.get("coll") == "purchases" else None,
                )
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        found = list(self.found)
        for grant in self.fulfilled:
            foreign = self.foreign.get(grant.get("session_id") or "")
            if foreign is not None:
                found.append(
                    Violation(
                        NAME,
                        f"purchase {grant.get('purchase_id')} fulfilled by session "
                        f"{foreign['session_id']}, created outside the engine "
                        f"({foreign['variant']}: {foreign['amount']} {foreign['currency']}, "
                        f"mode {foreign['mode']})",
                        at=grant["t"],
                        evidence=(foreign["seq"], grant["seq"]),
                        purchase_id=grant.get("purchase_id"),
                        session_id=foreign["session_id"],
                    )
                )
        prices = {p["_id"]: p.get("price_cents") for p in facts.programs}
        for purchase in facts.purchases:
            if purchase.get("status") != "completed":
                continue
            problem = self._problem(purchase, facts, prices.get(purchase.get("program_id")))
            if problem:
                found.append(
                    Violation(
                        NAME,
                        f"purchase {purchase['_id']} is completed by {problem}",
                        at=facts.end_t,
                        purchase_id=purchase["_id"],
                        session_id=purchase.get("stripe_session_id"),
                    )
                )
        return outcome(NAME, found)

    def _problem(self, purchase: dict[str, Any], facts: FinalFacts, price: Any) -> str | None:
        session_id = purchase.get("stripe_session_id")
        if session_id in self.foreign:
            return f"session {session_id}, created outside the engine"
        session = facts.sessions.get(session_id or "")
        if session is None:
            return f"session {session_id}, which Stripe never created"
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return f"session {session_id}, which Stripe has as {session.get('payment_status')}"
        if "amount_total" in session and price is not None and session["amount_total"] != price:
            return f"session {session_id} paying {session['amount_total']}, not the price {price}"
        if session.get("mode", "payment") != "payment":
            return f"session {session_id} in mode {session.get('mode')}"
        return None


def _attack_write(entry: dict[str, Any]) -> bool:
    """A write that changed a guarded collection under one of the adversary's requests."""
    return (
        str(entry.get("req") or "").startswith(ATTACK_REQUEST)
        and entry.get("coll") in GUARDED
        and bool(entry.get("modified", True))
    )
