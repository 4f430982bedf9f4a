"""cancel_answered_truly: a cancel answered "not cancellable" did not in fact cancel.

A customer told their cancel failed believes the checkout is still theirs to pay, and support
hears "I cancelled and it said no". So when a cancel of a pending purchase is refused
(`not_cancellable`), the purchase must not have ended unpaid (cancelled or expired) while that
cancel ran, unless something other than this cancel ended it:

- another cancel of it succeeded (a double click: one of the two wins), or another cancel's own
  request wrote the end, whatever its client heard (the winner crashed after its write landed:
  its client saw an error, the purchase is cancelled all the same; history `req` = `op<N>`);
- Stripe expired its session by the clock (`expires_at`, not an `expire` call) before it ended:
  no cancel's doing, and a cancel that then finds it ended is refused truly, however long it
  waited to run (a stalled instance, a lock wait).

What remains is the cancel's own doing: its own write, or the `checkout.session.expired` event
its own `expire` call caused. The reference once refused every cancel that way: that event
ended the purchase first.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "cancel_answered_truly"
ENDED_UNPAID = frozenset({"cancelled", "expired"})


class _Write(NamedTuple):
    seq: int
    status: Any
    session: Any
    req: str | None
    ended_here: Any  # truthy when this write moved the purchase into an unpaid end


class CancelAnsweredTruly:
    name = NAME
    types = frozenset(
        {"op.invoke", "op.ok", "op.fail", "store.write", "preload.purchase", "stripe.session"}
    )

    def __init__(self) -> None:
        self.cancels: dict[Any, tuple[str, int]] = {}  # op id -> (purchase, invoke line)
        self.requests: dict[str, set[str]] = {}  # purchase -> request ids of its cancels
        self.succeeded: set[str] = set()  # purchases some cancel of which answered ok
        #: (op id, purchase, invoke line, answer) of each cancel refused as not cancellable
        self.refused: list[tuple[Any, str, int, dict[str, Any]]] = []
        self.timeline: dict[str, list[_Write]] = {}  # purchase -> its writes, in order
        self.clock_expired: dict[str, int] = {}  # session -> line Stripe expired it by time

    def observe(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind == "stripe.session":
            if entry.get("action") == "expired:expires_at":
                self.clock_expired.setdefault(str(entry.get("id")), entry["seq"])
            return
        if kind.startswith("op."):
            if entry.get("op") != "cancel":
                return
            if kind == "op.invoke":
                purchase_id = str(entry.get("purchase_id"))
                self.cancels[entry["op_id"]] = (purchase_id, entry["seq"])
                self.requests.setdefault(purchase_id, set()).add(f"op{entry['op_id']}")
                return
            asked = self.cancels.get(entry["op_id"])
            if asked is None:
                return
            if kind == "op.ok":
                self.succeeded.add(asked[0])
            elif entry.get("error") == "not_cancellable":
                self.refused.append((entry["op_id"], asked[0], asked[1], entry))
            return
        is_purchase = kind == "preload.purchase" or entry.get("coll") == "purchases"
        doc = entry.get("doc")
        if is_purchase and doc and entry.get("id") is not None:
            writes = self.timeline.setdefault(str(entry["id"]), [])
            before = writes[-1].status if writes else None
            status = doc.get("status")
            # a conditional write that matched nothing (`modified` false) ended nothing
            ended_here = status in ENDED_UNPAID and before != status and entry.get("modified", 1)
            req = entry.get("req")
            session = doc.get("stripe_session_id")
            writes.append(_Write(entry["seq"], status, session, req and str(req), ended_here))

    def finish(self, facts: FinalFacts) -> Outcome:
        found = []
        for op_id, purchase_id, invoked, answer in self.refused:
            if purchase_id in self.succeeded:
                continue
            before = self._status(purchase_id, invoked)
            after = self._status(purchase_id, answer["seq"])
            if before != "pending" or after not in ENDED_UNPAID:
                continue
            if self._ended_by_other(op_id, purchase_id, invoked, answer["seq"]):
                continue
            found.append(
                Violation(
                    NAME,
                    f"a cancel of purchase {purchase_id} answered 'not cancellable' "
                    f"({answer.get('message')}), yet the purchase went from pending to "
                    f"{after} while it ran, neither by another cancel of it nor by its "
                    "session's own expiry",
                    at=answer["t"],
                    evidence=(invoked, answer["seq"]),
                    purchase_id=purchase_id,
                )
            )
        return outcome(NAME, found)

    def _status(self, purchase_id: str, seq: int) -> Any:
        """The purchase's status just before history line `seq`."""
        writes = self.timeline.get(purchase_id, [])
        n = bisect.bisect_left(writes, (seq,))
        return writes[n - 1].status if n else None

    def _ended_by_other(self, op_id: Any, purchase_id: str, invoked: int, answered: int) -> bool:
        """Whether what ended the purchase between `invoked` and `answered` was not this cancel:
        another cancel's request wrote an end (whatever its client saw), or the end came after
        Stripe expired the purchase's session by the clock."""
        own = f"op{op_id}"
        others = self.requests.get(purchase_id, set()) - {own}
        for write in self.timeline.get(purchase_id, []):
            if not invoked < write.seq < answered or not write.ended_here:
                continue
            if write.req in others:
                return True
            expired_at = self.clock_expired.get(str(write.session))
            if write.req != own and expired_at is not None and expired_at < write.seq:
                return True
        return False
