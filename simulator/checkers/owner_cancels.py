"""only_owner_cancels: a purchase is cancelled only at the request of the user who made it.

A cancel names a purchase id, and ids are easy to guess (sequential, or read off a shared
link): an engine that looks the purchase up by id alone lets anyone cancel anyone's checkout,
closing a customer's session and giving their seat away. The history says which client
operation made each write (`req` = `op<N>`) and who asked (`op.invoke`'s `user_id`), so a write
that turns another user's purchase `cancelled` under someone's cancel is the violation.
"""

from __future__ import annotations

from typing import Any

from simulator.checkers.base import FinalFacts, Outcome, Violation, outcome

NAME = "only_owner_cancels"


class OnlyOwnerCancels:
    name = NAME
    types = frozenset({"op.invoke", "store.write", "preload.purchase"})

    def __init__(self) -> None:
        #: request id of each cancel operation -> (who asked, its invoke line)
        self.cancels: dict[str, tuple[Any, int]] = {}
        self.status: dict[str, Any] = {}
        self.found: list[Violation] = []

    def observe(self, entry: dict[str, Any]) -> None:
        if entry["type"] == "op.invoke":
            if entry.get("op") == "cancel":
                self.cancels[f"op{entry['op_id']}"] = (entry.get("user_id"), entry["seq"])
            return
        is_purchase = entry["type"] == "preload.purchase" or entry.get("coll") == "purchases"
        doc = entry.get("doc")
        if not is_purchase or not doc or entry.get("id") is None:
            return
        pid = str(entry["id"])
        before, self.status[pid] = self.status.get(pid), doc.get("status")
        asked = self.cancels.get(str(entry.get("req")))
        if asked is None or doc.get("status") != "cancelled" or before == "cancelled":
            return
        user, invoked = asked
        if user != doc.get("user_id"):
            self.found.append(
                Violation(
                    NAME,
                    f"purchase {pid} of {doc.get('user_id')} was cancelled by a cancel that "
                    f"{user} asked for",
                    at=entry["t"],
                    evidence=(invoked, entry["seq"]),
                    purchase_id=pid,
                )
            )

    def finish(self, facts: FinalFacts) -> Outcome:
        return outcome(NAME, self.found)
