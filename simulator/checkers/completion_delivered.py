"""completion_delivered (liveness): a completed purchase got what it was paid for.

At quiescence every purchase the engine left `completed` was fulfilled (the fulfilment port
granted access for it at least once) and its receipt was delivered (the email port sent one for
it). `no_double_completion` bounds both from above ("at most once"); this is the other side:
a customer who paid, whose purchase says completed, and who never got access or never got the
confirmation, has been wronged as surely as one charged twice.

The receipt is judged once faults stop: the run's liveness phase ends every email outage and
runs the engine's sweep before it may call the run quiescent, so an engine that owes a receipt
has had its chance to send it. An unfinished run is unknown. A delivery the provider refused as
a repeat of an earlier key (`email.deduplicated`) is not a delivery for this purchase: only an
`email.sent` naming it is. Likewise a grant answered as a repeat (`fulfilment.deduplicated`):
only a `fulfilment` naming the purchase is access given.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome
from simulator.services import as_id

NAME = "completion_delivered"


class CompletionDelivered:
    name = NAME
    types = frozenset({"fulfilment", "email.sent", "email.failed"})

    def __init__(self) -> None:
        self.granted: set[Any] = set()
        self.receipted: set[Any] = set()
        #: purchase -> its last refused receipt (the evidence of one never delivered)
        self.refused: dict[Any, dict[str, Any]] = {}

    def observe(self, entry: dict[str, Any]) -> None:
        kind, purchase_id = entry["type"], entry.get("purchase_id")
        if kind == "fulfilment":
            self.granted.add(purchase_id)
        elif kind == "email.sent":
            self.receipted.add(purchase_id)
        else:
            self.refused[purchase_id] = entry

    def finish(self, facts: FinalFacts) -> Outcome:
        if not facts.quiescent:
            return outcome(NAME, [], known=False)
        found: list[Violation] = []
        for purchase in facts.purchases:
            if purchase.get("status") != "completed":
                continue
            # as the ledgers name it: an id that is not a string (a broken engine's) is a
            # tagged string there, and no unhashable id may stop the judgement
            pid = as_id(purchase["_id"])
            session_id = purchase.get("stripe_session_id")
            if pid not in self.granted:
                found.append(
                    Violation(
                        NAME,
                        f"purchase {pid} of {purchase.get('user_id')} is completed but access "
                        f"to {purchase.get('program_id')} was never granted",
                        at=facts.end_t,
                        purchase_id=str(pid),
                        session_id=session_id,
                    )
                )
            if pid not in self.receipted:
                refused = self.refused.get(pid)
                why = (
                    f"its last attempt failed at t={refused['t']:.3f} s and was never retried"
                    if refused
                    else "none was ever sent"
                )
                found.append(
                    Violation(
                        NAME,
                        f"purchase {pid} is completed but its receipt was never delivered: {why}",
                        at=refused["t"] if refused else facts.end_t,
                        evidence=(refused["seq"],) if refused else (),
                        purchase_id=str(pid),
                        session_id=session_id,
                    )
                )
        return outcome(NAME, found)
