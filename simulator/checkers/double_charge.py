"""no_double_charge: no customer keeps paying twice for one thing.

At quiescence, each (user, program) has at most one paid Checkout Session that was not
refunded: a second tab paid for the same purchase, or a second purchase of a program the user
already bought, must have been refunded. Only sessions the engine issued (recorded by some
purchase) count: one made outside it is `payment_matches_purchase`'s. (`no_lost_payment` only asks that each paid session
ends in *a* completed purchase or a refund; two paid sessions of one completed purchase pass it.)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome
from simulator.checkers.lost_payment import purchase_of

NAME = "no_double_charge"


class NoDoubleCharge:
    name = NAME
    types = frozenset({"stripe.session", "store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.paid: dict[str, dict[str, Any]] = {}
        #: sessions some purchase recorded as its own: the ones the engine issued
        self.issued: set[str] = set()

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "stripe.session":
            if entry.get("payment_status") == "paid" and entry["id"] not in self.paid:
                self.paid[entry["id"]] = entry
            return
        is_purchase = entry["type"] == "preload.purchase" or entry.get("coll") == "purchases"
        session = (entry.get("doc") or {}).get("stripe_session_id") or entry.get("session_id")
        if is_purchase and session:
            self.issued.add(str(session))

    def finish(self, facts: FinalFacts) -> Outcome:
        if not facts.quiescent:  # the refund of the second payment may still be on its way
            return outcome(NAME, [], known=False)
        refunded = {r["payment_intent"] for r in facts.ledgers.get("refunds", [])}
        kept: defaultdict[tuple[Any, Any], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for session_id, paid in self.paid.items():
            if paid.get("payment_intent") in refunded or session_id not in self.issued:
                continue  # refunded, or made outside the engine (payment_matches_purchase's)
            purchase = purchase_of(session_id, facts)
            if purchase is None:  # nobody to charge twice that we can name: no_lost_payment's case
                continue
            kept[(purchase.get("user_id"), purchase.get("program_id"))].append((session_id, paid))
        found = []
        for (user, program), sessions in kept.items():
            if len(sessions) < 2:
                continue
            ids = ", ".join(s for s, _ in sessions)
            last = max(sessions, key=lambda s: s[1]["seq"])
            found.append(
                Violation(
                    NAME,
                    f"user {user} paid {len(sessions)} sessions for {program} and kept paying "
                    f"for all of them (none refunded): {ids}",
                    at=last[1]["t"],
                    evidence=tuple(sorted(p["seq"] for _, p in sessions)),
                    session_id=last[0],
                )
            )
        return outcome(NAME, found)
