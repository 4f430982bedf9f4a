"""refund_justified: every refund the engine issues is justified by the state when it was paid.

A customer who paid a session the engine issued and had not closed, for a purchase still
pending at that moment, is owed the purchase, not a refund. A refund is justified when the
engine had asked Stripe to expire the session before it was paid (a cancel, a replaced
checkout), when the session's purchase had already ended (cancelled, expired, failed: a late
payment, re-seated if it can be, else refunded) or been completed by another session (a second
payment), or when no purchase ever recorded the session as its own (one made outside the
engine). And a refund never gives back the payment of a purchase that session completed: at the
end, no completed purchase is completed by a refunded session (the customer would keep the
program and the money: two notices of one late payment, one re-seating it, one refunding it).
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "refund_justified"
EXPIRE_PATH = re.compile(r"/v1/checkout/sessions/([^/]+)/expire")


class RefundJustified:
    name = NAME
    types = frozenset(
        {"store.write", "preload.purchase", "stripe.session", "stripe.request", "stripe.refund"}
    )

    def __init__(self) -> None:
        #: purchase -> (seq, status) after each write, in history order
        self.timeline: dict[str, list[tuple[int, str | None]]] = {}
        self.purchases_of_session: dict[str, set[str]] = {}
        self.expire_asked: dict[str, int] = {}  # session -> seq of the first expire request
        self.paid: dict[str, dict[str, Any]] = {}
        self.refunds: list[dict[str, Any]] = []

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind in ("store.write", "preload.purchase"):
            doc = entry.get("doc")
            is_purchase = kind == "preload.purchase" or entry.get("coll") == "purchases"
            if not is_purchase or not doc or entry.get("id") is None:
                return
            pid = str(entry["id"])
            self.timeline.setdefault(pid, []).append((entry["seq"], doc.get("status")))
            session = doc.get("stripe_session_id") or entry.get("session_id")
            if session:
                self.purchases_of_session.setdefault(str(session), set()).add(pid)
        elif kind == "stripe.request":
            match = EXPIRE_PATH.fullmatch(str(entry.get("path", "")))
            if match and entry.get("method") == "POST":
                self.expire_asked.setdefault(match.group(1), entry["seq"])
        elif kind == "stripe.session":
            if entry.get("payment_status") == "paid" and entry["id"] not in self.paid:
                self.paid[entry["id"]] = entry
        else:
            self.refunds.append(entry)

    def finish(self, facts: FinalFacts) -> Outcome:
        found = []
        for refund in self.refunds:
            session_id = refund.get("session_id")
            paid = self.paid.get(session_id or "")
            if paid is None or self.expire_asked.get(session_id or "", paid["seq"]) < paid["seq"]:
                continue  # never paid (Stripe would refuse), or closed by the engine first
            for pid in sorted(self._owners(session_id or "")):
                status = self._status_at(pid, paid["seq"])
                if status != "pending":
                    continue
                found.append(
                    Violation(
                        NAME,
                        f"refunded session {session_id}, which the customer paid while its "
                        f"purchase {pid} was pending and the engine had not closed the session",
                        at=refund["t"],
                        evidence=(paid["seq"], refund["seq"]),
                        purchase_id=pid,
                        session_id=session_id,
                    )
                )
        found += self._refunded_yet_completed(facts)
        return outcome(NAME, found)

    def _refunded_yet_completed(self, facts: FinalFacts) -> list[Violation]:
        refunds = {r.get("session_id"): r for r in self.refunds if r.get("session_id")}
        return [
            Violation(
                NAME,
                f"refunded session {p['stripe_session_id']}, which completed purchase "
                f"{p['_id']}: the customer keeps both the program and the money",
                at=refunds[p["stripe_session_id"]]["t"],
                evidence=(refunds[p["stripe_session_id"]]["seq"],),
                purchase_id=p["_id"],
                session_id=p["stripe_session_id"],
            )
            for p in facts.purchases
            if p.get("status") == "completed" and p.get("stripe_session_id") in refunds
        ]

    def _owners(self, session_id: str) -> set[str]:
        """Purchases that recorded the session as theirs: one the engine issued. A session made
        outside the engine that merely names a purchase (a Payment Link, an attacker) is not
        the engine's to honour, so refunding it is never a wrong of this kind."""
        return set(self.purchases_of_session.get(session_id, ()))

    def _status_at(self, purchase_id: str, seq: int) -> str | None:
        """The purchase's status just before history line `seq` (None: it did not exist)."""
        writes = self.timeline.get(purchase_id, [])
        n = bisect.bisect_left(writes, (seq, ""))
        return writes[n - 1][1] if n else None
