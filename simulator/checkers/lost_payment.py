"""no_lost_payment: every session Stripe marked paid ends in a completed purchase, or a refund.

Judged at quiescence: before it, a paid session may still be on its way to its purchase or its
refund (a Stripe call in flight, a refund the sweep still owes), so an unfinished run is unknown.

A paid session created outside the engine (the adversary's `adversary.foreign_session`) is not
the engine's to complete: it must be refunded, or kept for a human in the store's
`webhook_dead_letters` (a document with its `session_id`). A session the engine issued may not
end there: that would be a payment lost with a note. A foreign session's events are the only
way the engine hears of it: when Stripe gave up on every one of them under the nemesis (as
`webhooks_acknowledged` does not judge such an event), and none was acknowledged, it is not
judged either. (An engine could still learn of it by listing Stripe's undelivered events; the
fake does not offer that list yet.) The engine's own sessions are judged whatever became of
their events: it issued them, and can ask.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers import faults_on
from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_lost_payment"


class NoLostPayment:
    name = NAME
    types = frozenset(
        {
            "stripe.session",
            "adversary.foreign_session",
            "stripe.event",
            "webhook.given_up",
            *faults_on.TYPES,
        }
    )

    def __init__(self) -> None:
        self.paid_at: dict[str, dict[str, Any]] = {}
        self.foreign: set[str] = set()
        self.faults_on = faults_on.FaultsOn()
        #: session -> its events not (yet) given up under the nemesis
        self.heard: dict[str, set[str]] = {}
        self.session_of_event: dict[str, str] = {}

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind in faults_on.TYPES:
            self.faults_on.observe(entry)
        elif kind == "adversary.foreign_session":
            self.foreign.add(entry["session_id"])
        elif kind == "stripe.event":
            session_id = entry.get("session_id")
            if session_id is not None:
                self.heard.setdefault(session_id, set()).add(entry["id"])
                self.session_of_event[entry["id"]] = session_id
        elif kind == "webhook.given_up":
            session_id = self.session_of_event.get(entry["event_id"])
            if self.faults_on and session_id is not None:
                self.heard[session_id].discard(entry["event_id"])
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
                if self.heard.get(session_id) == set():
                    continue  # every event of it given up under the nemesis: never heard of
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
