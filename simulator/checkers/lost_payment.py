"""no_lost_payment: every session Stripe marked paid ends in a completed purchase, or a refund.

Judged at quiescence: before it, a paid session may still be on its way to its purchase or its
refund (a Stripe call in flight, a refund the sweep still owes), so an unfinished run is unknown.

A paid session created outside the engine (the adversary's `adversary.foreign_session`) is not
the engine's to complete: it must be refunded, or kept for a human in the store's
`webhook_dead_letters` (a document with its `session_id`). A session the engine issued may not
end there: that would be a payment lost with a note. A foreign session's events are the only
way the engine hears of it, and it is judged even when Stripe gave up on every one of them: the
engine can list the events Stripe never delivered (`GET /v1/events?delivery_success=false`, as
Stripe advises after an outage; Stripe and the fake list 30 days, the longest a scenario's
workload may last).
The engine's own sessions are judged whatever became of their events: it issued them, and can
ask.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_lost_payment"


class NoLostPayment:
    name = NAME
    types = frozenset({"stripe.session", "adversary.foreign_session"})

    def __init__(self) -> None:
        self.paid_at: dict[str, dict[str, Any]] = {}
        self.foreign: set[str] = set()

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "adversary.foreign_session":
            self.foreign.add(entry["session_id"])
        elif entry.get("payment_status") == "paid" and entry["id"] not in self.paid_at:
            self.paid_at[entry["id"]] = entry

    def finish(self, facts: FinalFacts) -> Outcome:
        if not facts.quiescent:
            return outcome(NAME, [], known=False)
        refunded = {r["payment_intent"] for r in facts.ledgers.get("refunds", [])}
        kept = {d.get("session_id") for d in facts.final_state.get("webhook_dead_letters", [])}
        found = []
        for session_id, paid in self.paid_at.items():
            if session_id in self.foreign:
                if paid.get("payment_intent") in refunded or session_id in kept:
                    continue
                found.append(
                    Violation(
                        NAME,
                        f"session {session_id}, created outside the engine, was paid but neither "
                        "refunded nor kept for a human (webhook_dead_letters)",
                        at=paid["t"],
                        evidence=(paid["seq"],),
                        session_id=session_id,
                    )
                )
                continue
            purchase = purchase_of(session_id, facts)
            if purchase is not None and purchase.get("status") == "completed":
                continue
            if paid.get("payment_intent") in refunded:
                continue
            state = (
                "no purchase"
                if purchase is None
                else f"purchase {purchase['_id']} is {purchase.get('status')}"
            )
            found.append(
                Violation(
                    NAME,
                    f"session {session_id} was paid but {state} and nothing was refunded",
                    at=paid["t"],
                    evidence=(paid["seq"],),
                    purchase_id=purchase["_id"] if purchase else None,
                    session_id=session_id,
                )
            )
        return outcome(NAME, found)


def purchase_of(session_id: str, facts: FinalFacts) -> dict[str, Any] | None:
    """The purchase a session belongs to: by the engine's own reference, else Stripe's metadata."""
    for p in facts.purchases:
        if p.get("stripe_session_id") == session_id:
            return p
    session = facts.sessions.get(session_id) or {}
    pid = session.get("client_reference_id") or (session.get("metadata") or {}).get("purchase_id")
    return next((p for p in facts.purchases if p["_id"] == pid), None) if pid else None
