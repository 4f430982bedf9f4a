"""no_stuck_purchase: nobody is left waiting forever.

Once the run is quiescent (no session anyone can still pay, no webhook Stripe still owes, the
engine's sweeper given its grace), no purchase is still pending: each ended completed, cancelled,
expired, failed or refunded. A pending purchase then is a customer who is neither served nor
told, with a seat held for nobody.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "no_stuck_purchase"


class NoStuckPurchase:
    name = NAME
    types = frozenset({"store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.last_write: dict[str, int] = {}  # purchase -> history line of its last write

    def observe(self, entry: dict[str, Any]) -> None:
        is_purchase = entry["type"] == "preload.purchase" or entry.get("coll") == "purchases"
        if is_purchase and entry.get("id") is not None:
            self.last_write[str(entry["id"])] = entry["seq"]

    def finish(self, facts: FinalFacts) -> Outcome:
        if not facts.quiescent:
            return outcome(NAME, [], known=False)
        found = []
        for purchase in facts.purchases:
            if purchase.get("status") != "pending":
                continue
            session_id = purchase.get("stripe_session_id")
            session = facts.sessions.get(session_id or "") or {}
            state = (
                f"its session {session_id} is {session.get('status')}/"
                f"{session.get('payment_status')}"
                if session
                else "it has no session"
            )
            found.append(
                Violation(
                    NAME,
                    f"purchase {purchase['_id']} of {purchase.get('user_id')} is still pending "
                    f"after quiescence; {state}",
                    at=facts.end_t,
                    evidence=tuple(
                        [self.last_write[purchase["_id"]]]
                        if purchase["_id"] in self.last_write
                        else []
                    ),
                    purchase_id=str(purchase["_id"]),
                    session_id=session_id,
                )
            )
        return outcome(NAME, found)
