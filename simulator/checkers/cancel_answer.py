"""cancel_answered_truly: a cancel answered "not cancellable" did not in fact cancel.

A customer told their cancel failed believes the checkout is still theirs to pay, and support
hears "I cancelled and it said no". So when a cancel of a pending purchase is refused
(`not_cancellable`), the purchase must not have ended unpaid (cancelled or expired) while that
cancel ran, unless another cancel of it succeeded (a double click: one of the two wins). The
reference once refused every cancel this way: the `checkout.session.expired` event its own
expiry caused ended the purchase first.
"""

from __future__ import annotations

import bisect
from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "cancel_answered_truly"
ENDED_UNPAID = frozenset({"cancelled", "expired"})


class CancelAnsweredTruly:
    name = NAME
    types = frozenset({"op.invoke", "op.ok", "op.fail", "store.write", "preload.purchase"})

    def __init__(self) -> None:
        self.cancels: dict[Any, tuple[str, int]] = {}  # op id -> (purchase, invoke line)
        self.succeeded: set[str] = set()  # purchases some cancel of which answered ok
        self.refused: list[tuple[str, int, dict[str, Any]]] = []  # (purchase, invoke, answer)
        self.timeline: dict[str, list[tuple[int, Any]]] = {}  # purchase -> (line, status)

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind.startswith("op."):
            if entry.get("op") != "cancel":
                return
            if kind == "op.invoke":
                self.cancels[entry["op_id"]] = (str(entry.get("purchase_id")), entry["seq"])
                return
            asked = self.cancels.get(entry["op_id"])
            if asked is None:
                return
            if kind == "op.ok":
                self.succeeded.add(asked[0])
            elif entry.get("error") == "not_cancellable":
                self.refused.append((asked[0], asked[1], entry))
            return
        is_purchase = kind == "preload.purchase" or entry.get("coll") == "purchases"
        doc = entry.get("doc")
        if is_purchase and doc and entry.get("id") is not None:
            self.timeline.setdefault(str(entry["id"]), []).append((entry["seq"], doc.get("status")))

    def finish(self, facts: FinalFacts) -> Outcome:
        found = []
        for purchase_id, invoked, answer in self.refused:
            if purchase_id in self.succeeded:
                continue
            before, after = self._status(purchase_id, invoked), self._status(purchase_id, answer["seq"])
            if before == "pending" and after in ENDED_UNPAID:
                found.append(
                    Violation(
                        NAME,
                        f"a cancel of purchase {purchase_id} answered 'not cancellable' "
                        f"({answer.get('message')}), yet the purchase went from pending to "
                        f"{after} while it ran and no other cancel of it succeeded",
                        at=answer["t"],
                        evidence=(invoked, answer["seq"]),
                        purchase_id=purchase_id,
                    )
                )
        return outcome(NAME, found)

    def _status(self, purchase_id: str, seq: int) -> Any:
        """The purchase's status just before history line `seq`."""
        writes = self.timeline.get(purchase_id, [])
        n = bisect.bisect_left(writes, (seq, ""))
        return writes[n - 1][1] if n else None
